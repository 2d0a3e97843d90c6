import { AbortedError, InvalidArgumentError } from '../errors.js';
import { computeDelay } from '../retry/compute-delay.js';
import {
  type DeliveryControl,
  type DeliveryResult,
  type MessageProcessingOptions,
  PROCESSING_OPTIONS,
  createMessageProcessor,
} from './message-processor.js';
import { checkOptionNames, optionNames } from '../option-names.js';
import type { Delivery, MessageSource } from './types.js';

/** Options of {@link createConsumer}: what to run, and how much at once. */
export interface ConsumerOptions<B = unknown> extends MessageProcessingOptions<B> {
  source: MessageSource;
  /** Handlers running at once (default 1). */
  concurrency?: number;
  /**
   * Deliveries held unsettled at once, running or waiting for a handler slot (default:
   * `concurrency`; at least `concurrency`). The source stops delivering at this bound, so a
   * slow handler holds the rest of the queue at the broker instead of piling it up here.
   */
  prefetch?: number;
  /**
   * How often `delivery.touch()` tells the broker that held deliveries are still being
   * worked on, where the adapter supports it (default 10000 ms; 0 turns it off). Keep it
   * under the broker's ack deadline.
   */
  touchIntervalMs?: number;
}

/** What `stop` did. */
export interface StopResult {
  /** Handlers that were running when stop began and finished (settled) within the bound. */
  finished: number;
  /** Deliveries given back unsettled: never started, or still running at the bound. */
  released: number;
  /**
   * Handlers that had finished but whose settling call (ack, redelivery, quarantine) the
   * broker had not answered at the bound: neither finished nor given back; the broker decides.
   */
  settling: number;
}

/** Counters of a consumer. */
export interface ConsumerStats {
  state: ConsumerState;
  /** Handlers running now. */
  running: number;
  /** Deliveries held, waiting for a handler slot. */
  waiting: number;
  acked: number;
  retried: number;
  quarantined: number;
  released: number;
  /** Settling calls the broker refused. */
  settleFailures: number;
}

export type ConsumerState = 'idle' | 'running' | 'stopping' | 'stopped';

/** A running queue consumer. */
export interface Consumer {
  readonly source: MessageSource;
  readonly state: ConsumerState;
  /** Starts taking messages; resolves once the source delivers. */
  start(): Promise<void>;
  /**
   * Graceful shutdown: stops taking messages, gives back those not started, lets running
   * handlers finish for at most `timeoutMs` (default 30000), then gives back the rest
   * unsettled (the broker redelivers them) and aborts their `message.signal`. Nothing that
   * did not finish is acked. Does not close the source.
   */
  stop(options?: { timeoutMs?: number }): Promise<StopResult>;
  stats(): ConsumerStats;
}

/**
 * One held delivery, and the control its processing gets. A class rather than a literal with
 * closures: at thousands of messages a second the per-message allocations show in profiles.
 */
class Slot implements DeliveryControl {
  started = false;
  /** Given back at shutdown: must not be settled any more. */
  released = false;
  /** A settling call is under way: must not be given back. */
  settling = false;
  /** Set while a refused settle waits to give the delivery back: ends that wait at once. */
  wakeEarly: (() => void) | undefined;
  /** Made on first use: most handlers never look at their signal, and a controller is costly. */
  #controller: AbortController | undefined;

  constructor(
    readonly delivery: Delivery,
    readonly done: () => void,
  ) {}

  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  /** Aborts the signal; one read later (or never) sees it aborted all the same. */
  abort(reason: unknown): void {
    this.#controller ??= new AbortController();
    this.#controller.abort(reason);
  }

  claimSettle(): boolean {
    if (this.released) return false;
    this.settling = true;
    return true;
  }
}

const DEFAULT_STOP_TIMEOUT_MS = 30_000;
const DEFAULT_TOUCH_INTERVAL_MS = 10_000;

const CONSUMER_OPTIONS = optionNames<ConsumerOptions>({
  ...PROCESSING_OPTIONS,
  source: true,
  concurrency: true,
  prefetch: true,
  touchIntervalMs: true,
});

/**
 * Creates a consumer: every delivery of `source` runs `handler` through the idempotency
 * state machine, and the outcome decides ack, delayed redelivery or quarantine (see
 * docs/readme/consumer.md for the table). At most `concurrency` handlers run and at most
 * `prefetch` deliveries are held unsettled.
 */
export function createConsumer<B = unknown>(options: ConsumerOptions<B>): Consumer {
  if (typeof options === 'object' && options !== null) {
    checkOptionNames('createConsumer', options, CONSUMER_OPTIONS);
  }
  const processor = createMessageProcessor(options);
  const { source } = options;
  if (
    typeof source !== 'object' ||
    source === null ||
    typeof source.start !== 'function' ||
    typeof source.stop !== 'function'
  ) {
    throw new InvalidArgumentError('source must be a MessageSource (start, stop, close)');
  }
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError(
      `concurrency must be an integer >= 1, got ${String(concurrency)}`,
    );
  }
  const prefetch = options.prefetch ?? concurrency;
  if (!Number.isInteger(prefetch) || prefetch < concurrency) {
    throw new InvalidArgumentError(
      `prefetch must be an integer >= concurrency (${concurrency}), got ${String(prefetch)}`,
    );
  }
  const touchMs = options.touchIntervalMs ?? DEFAULT_TOUCH_INTERVAL_MS;
  if (typeof touchMs !== 'number' || !Number.isFinite(touchMs) || touchMs < 0) {
    throw new InvalidArgumentError(
      `touchIntervalMs must be a finite number >= 0, got ${String(touchMs)}`,
    );
  }
  const { clock, emit } = processor;

  const waiting: Slot[] = [];
  const running = new Set<Slot>();
  /** Slots a stop gave back while their handler still ran: they end on their own. */
  const orphans = new Set<Slot>();
  const idleWaiters: Array<() => void> = [];
  const counts = { acked: 0, retried: 0, quarantined: 0, released: 0, settleFailures: 0 };
  let state: ConsumerState = 'idle';
  let cancelTouch: (() => void) | undefined;
  let stopping: Promise<StopResult> | undefined;
  /** The source's start() while it runs (settled, never rejected), so that a stop waits for it. */
  let sourceStarting: Promise<void> | undefined;

  function onDelivery(delivery: Delivery): Promise<void> {
    return new Promise<void>((resolve) => {
      const slot = new Slot(delivery, resolve);
      if (state !== 'running') {
        // Arrived after stop began: it never starts here.
        void giveBack(slot);
        return;
      }
      waiting.push(slot);
      pump();
      armTouch();
    });
  }

  function pump(): void {
    // Handlers a stop gave up waiting for still run: they count until they end, so a restart
    // never runs more than `concurrency` at once.
    while (state === 'running' && running.size + orphans.size < concurrency) {
      const slot = waiting.shift();
      if (!slot) return;
      run(slot);
    }
  }

  function run(slot: Slot): void {
    slot.started = true;
    running.add(slot);
    void runToEnd(slot);
  }

  /** One async function instead of a then/then/finally chain: fewer promises per message. */
  async function runToEnd(slot: Slot): Promise<void> {
    try {
      const result = await processor.process(slot.delivery, slot);
      count(result);
      // The broker refused the settling call (a delay tier gone, a dead-letter destination
      // that refuses): the delivery is still held, unacked, and RabbitMQ has no ack deadline to
      // end that. It is given back after a first backoff (not at once: the same refusal would
      // loop), so it comes back and frees its prefetch slot.
      if (result.action !== 'abandoned' && !result.settled && !slot.released) {
        await giveBackLater(slot);
      }
    } catch {
      // Not expected (process settles every outcome); never leave the slot held. Redelivered
      // after a first backoff, not given straight back: what broke processing once would break
      // it again at once, in a loop.
      if (!slot.released && !slot.settling) await sendLater(slot);
    }
    running.delete(slot);
    orphans.delete(slot);
    slot.done();
    pump();
    if (running.size === 0 && waiting.length === 0) {
      for (const wake of idleWaiters.splice(0)) wake();
    }
  }

  function count(result: DeliveryResult): void {
    if (result.action === 'abandoned') return;
    if (!result.settled) {
      counts.settleFailures += 1;
      return;
    }
    if (result.action === 'ack') counts.acked += 1;
    else if (result.action === 'retry') counts.retried += 1;
    else counts.quarantined += 1;
  }

  async function giveBackLater(slot: Slot): Promise<void> {
    // Not waited for once the consumer stops: no timer may outlive stop().
    if (state !== 'running') {
      if (!slot.released) await giveBack(slot);
      return;
    }
    await new Promise<void>((resolve) => {
      const cancel = clock.setTimer(computeDelay(processor.retry, 0, processor.random), resolve);
      slot.wakeEarly = () => {
        cancel();
        resolve();
      };
    });
    slot.wakeEarly = undefined;
    if (!slot.released) await giveBack(slot);
  }

  async function sendLater(slot: Slot): Promise<void> {
    slot.settling = true;
    const { delivery } = slot;
    try {
      await delivery.retryLater(computeDelay(processor.retry, 0, processor.random));
      counts.retried += 1;
    } catch (error) {
      settleFailed(delivery, 'retryLater', error);
    }
  }

  function settleFailed(
    delivery: Delivery,
    action: 'retryLater' | 'release',
    error: unknown,
  ): void {
    counts.settleFailures += 1;
    emit({ type: 'settle_failed', id: delivery.id, source: delivery.source, action, error });
  }

  async function giveBack(slot: Slot): Promise<void> {
    slot.released = true;
    counts.released += 1;
    const { delivery } = slot;
    if (delivery.release) {
      try {
        await delivery.release();
      } catch (error) {
        settleFailed(delivery, 'release', error);
      }
    }
    emit({ type: 'released', id: delivery.id, source: delivery.source, started: slot.started });
    slot.done();
  }

  function armTouch(): void {
    if (touchMs === 0 || cancelTouch !== undefined) return;
    cancelTouch = clock.setTimer(touchMs, () => {
      cancelTouch = undefined;
      const held = [...waiting, ...running].filter((s) => !s.released && !s.settling);
      for (const slot of held) {
        const { delivery } = slot;
        if (!delivery.touch) continue;
        delivery.touch().catch((error: unknown) => {
          emit({
            type: 'settle_failed',
            id: delivery.id,
            source: delivery.source,
            action: 'touch',
            error,
          });
        });
      }
      if (waiting.length > 0 || running.size > 0) armTouch();
    });
  }

  function whenIdle(): Promise<void> {
    if (running.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => idleWaiters.push(resolve));
  }

  async function shutdown(timeoutMs: number): Promise<StopResult> {
    state = 'stopping';
    // Counted before the source stops: a handler that finishes while the adapter is
    // stopping still finished within the bound.
    const runningAtStop = new Set(running);
    let stopError: unknown;
    try {
      await source.stop();
    } catch (error) {
      stopError = error;
    }
    // A stop while the source was still starting: the source sees it and gives up at its next
    // step, and the consumer is stopped only once that start has ended (consuming nothing).
    await sourceStarting;
    const queued = waiting.splice(0);
    await Promise.all(queued.map((slot) => giveBack(slot)));
    // Refused settles waiting to give their delivery back: now, before the source closes.
    for (const slot of running) slot.wakeEarly?.();

    if (running.size > 0 && timeoutMs > 0) {
      let cancelTimer: (() => void) | undefined;
      const timedOut = new Promise<void>((resolve) => {
        cancelTimer = clock.setTimer(timeoutMs, resolve);
      });
      await Promise.race([whenIdle(), timedOut]);
      cancelTimer?.();
    }
    // A settle refused while stopping started its wait before it could be woken above.
    for (const slot of running) slot.wakeEarly?.();
    // Past the bound: give back whatever is not already settling; its handler may go on,
    // but its outcome is no longer acted on (the broker redelivers it, and the idempotency
    // record makes the redelivery replay or resume rather than repeat).
    const late = [...running].filter((slot) => !slot.settling);
    await Promise.all(
      late.map(async (slot) => {
        running.delete(slot);
        orphans.add(slot);
        await giveBack(slot);
        slot.abort(
          new AbortedError(new Error(`the consumer stopped and its ${timeoutMs} ms bound passed`)),
        );
      }),
    );
    cancelTouch?.();
    cancelTouch = undefined;
    state = 'stopped';
    if (stopError !== undefined) throw stopError;
    const lateSet = new Set(late);
    let finished = 0;
    let settling = 0;
    let givenBack = 0;
    for (const slot of runningAtStop) {
      if (lateSet.has(slot)) continue;
      // A refused settle given back above; or still held, its settling call in flight.
      if (slot.released) givenBack++;
      else if (running.has(slot)) settling++;
      else finished++;
    }
    return { finished, released: queued.length + late.length + givenBack, settling };
  }

  return {
    source,

    get state() {
      return state;
    },

    async start() {
      if (state === 'running' || state === 'stopping') {
        throw new InvalidArgumentError(`the consumer is already ${state}`);
      }
      state = 'running';
      stopping = undefined;
      let started: Promise<void>;
      try {
        started = Promise.resolve(source.start(onDelivery, { prefetch }));
      } catch (error) {
        state = 'idle';
        throw error;
      }
      sourceStarting = started.then(
        () => undefined,
        () => undefined,
      );
      try {
        await started;
      } catch (error) {
        // Unless a stop() came meanwhile, which owns the state from then on.
        if (stopping === undefined) state = 'idle';
        throw error;
      }
    },

    stop(stopOptions = {}) {
      if (typeof stopOptions !== 'object' || stopOptions === null) {
        return Promise.reject(
          new InvalidArgumentError(
            `stop options must be an object such as { timeoutMs: 5000 }, got ${String(stopOptions)}`,
          ),
        );
      }
      const timeoutMs = stopOptions.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
      if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
        return Promise.reject(
          new InvalidArgumentError(
            `timeoutMs must be a finite number >= 0, got ${String(timeoutMs)}`,
          ),
        );
      }
      if (stopping !== undefined) return stopping;
      if (state !== 'running') {
        state = state === 'idle' ? 'idle' : 'stopped';
        return Promise.resolve({ finished: 0, released: 0, settling: 0 });
      }
      stopping = shutdown(timeoutMs);
      return stopping;
    },

    stats() {
      return { state, running: running.size, waiting: waiting.length, ...counts };
    },
  };
}
