import { type Clock, systemClock } from '../clock.js';
import { type Duration, toMs } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import {
  type MemoryDeadLetterQueue,
  createMemoryDeadLetterQueue,
} from './memory-dead-letter-queue.js';
import { Fifo } from './fifo.js';
import type { Delivery, Headers, MessageSource, QuarantineHistory } from './types.js';

/** A body to publish: bytes as they are, a string as UTF-8, anything else as JSON. */
export type MemoryBody = Uint8Array | string | number | boolean | null | object;

/** A message to publish on a memory source. */
export interface MemoryMessage {
  body: MemoryBody;
  headers?: Headers;
  /**
   * Message id. Publishing twice with the same id models a producer that sent its message
   * twice: two copies, each delivered and counted on its own. Default: `<name>-<n>`.
   */
  id?: string;
}

/** How a delivery ended. `lost`: its consumer crashed or its ack timeout passed. */
export type MemorySettlement = 'ack' | 'retry' | 'quarantine' | 'release' | 'lost';

/** One delivery as the memory source saw it. */
export interface MemoryDeliveryRecord {
  id: string;
  /** Which copy of the id (publications with the same id are copies 1, 2...). */
  copy: number;
  deliveryCount: number;
  deliveredAt: number;
  settlement?: MemorySettlement;
  settledAt?: number;
  /** The delay asked for by `retryLater`. */
  delayMs?: number;
}

/** Counters of a memory source, for tests and the demo. */
export interface MemorySourceStats {
  published: number;
  delivered: number;
  /** Deliveries after the first of a message (retries, releases, crashes). */
  redelivered: number;
  acked: number;
  retried: number;
  quarantined: number;
  released: number;
  lost: number;
  touched: number;
  /** Waiting for delivery now. */
  ready: number;
  /** Waiting for a `retryLater` delay to pass. */
  delayed: number;
  /** Delivered and not yet settled. */
  unsettled: number;
  /** The most ever unsettled at once (never above the prefetch). */
  maxUnsettled: number;
}

export interface MemorySourceOptions {
  /** Queue name; also the `source` of quarantined messages (redrive sends them back here). */
  name: string;
  /** Clock for publication times, delays and the ack timeout (default: the system clock). */
  clock?: Clock;
  /** Dead-letter queue to quarantine into (default: a new one of this source's own). */
  deadLetter?: MemoryDeadLetterQueue;
  /**
   * A delivery neither settled nor touched for this long is redelivered, like SQS's
   * visibility timeout or JetStream's AckWait (default: never, like RabbitMQ).
   */
  ackTimeout?: Duration;
}

/**
 * An in-memory broker queue implementing {@link MessageSource}: delivery counts, delayed
 * redelivery on the injected clock, a dead-letter queue, duplicate publications, crashes,
 * and inspection helpers for tests and the demo.
 */
export interface MemorySource extends MessageSource {
  /** Publishes a message; returns its id. Delivery starts on the next microtask. */
  publish(message: MemoryMessage): string;
  /** Where `quarantine` puts messages; `redrive` brings them back here. */
  readonly deadLetters: MemoryDeadLetterQueue;
  /** Every delivery so far, in order; only those of message `id` when given. */
  deliveries(id?: string): MemoryDeliveryRecord[];
  stats(): MemorySourceStats;
  /**
   * Models the consumer's process dying: its connection is dropped (nothing more is
   * delivered to it; a new consumer may `start`), every unsettled delivery goes back to the
   * queue at once, and their later settling is refused. Returns how many went back.
   */
  crash(): number;
  /**
   * Models a dropped broker connection that the adapter re-established at once: every
   * unsettled delivery goes back to the queue (its later settling is refused) and delivery
   * goes on to the same consumer. Returns how many went back.
   */
  interrupt(): number;
  /** True when nothing is ready, delayed or unsettled. */
  isIdle(): boolean;
}

interface Entry {
  seq: number;
  id: string;
  copy: number;
  body: Uint8Array;
  headers: Headers;
  publishedAt: number;
  deliveries: number;
}

interface Held {
  entry: Entry;
  record: MemoryDeliveryRecord;
  cancelTimeout: (() => void) | undefined;
  /** Marks the delivery as no longer held (settled or lost). */
  end(settlement: MemorySettlement): void;
}

const encoder = new TextEncoder();

/** Creates an in-memory {@link MemorySource}. */
export function createMemorySource(options: MemorySourceOptions): MemorySource {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('createMemorySource needs an options object with a name');
  }
  const { name } = options;
  if (typeof name !== 'string' || name === '') {
    throw new InvalidArgumentError(
      `memory source name must be a non-empty string, got ${JSON.stringify(name)}`,
    );
  }
  const clock = options.clock ?? systemClock;
  if (typeof clock?.now !== 'function' || typeof clock.setTimer !== 'function') {
    throw new InvalidArgumentError('memory source clock must have now() and setTimer()');
  }
  const ackTimeoutMs =
    options.ackTimeout === undefined ? undefined : toMs(options.ackTimeout, 'ackTimeout');
  if (ackTimeoutMs !== undefined && ackTimeoutMs <= 0) {
    throw new InvalidArgumentError(`ackTimeout must be greater than 0, got ${ackTimeoutMs}`);
  }
  const deadLetters = options.deadLetter ?? createMemoryDeadLetterQueue({ clock });

  const ready = new Fifo<Entry>();
  /**
   * Deliveries given back (released, or lost with their consumer): delivered again before
   * anything in `ready`, in publish order whatever order they came back in, as a RabbitMQ
   * queue puts a requeued message back at its place.
   */
  const returned: Entry[] = [];
  /** Deliveries waiting out a retryLater delay: their timer, and when it is due. */
  const delayed = new Map<Entry, { cancel: () => void; dueAt: number }>();
  /**
   * Delayed deliveries of a closed source: their timers are stopped (a closed source keeps no
   * timer that would hold the process), and armed again, for what is left of the delay, at
   * the next start.
   */
  const parked = new Map<Entry, number>();

  function arm(entry: Entry, dueAt: number): void {
    const cancel = clock.setTimer(Math.max(0, dueAt - clock.now()), () => {
      delayed.delete(entry);
      ready.push(entry);
      schedulePump();
    });
    delayed.set(entry, { cancel, dueAt });
  }
  const held = new Set<Held>();
  const log: MemoryDeliveryRecord[] = [];
  const copies = new Map<string, number>();
  const counters = {
    published: 0,
    delivered: 0,
    redelivered: 0,
    acked: 0,
    retried: 0,
    quarantined: 0,
    released: 0,
    lost: 0,
    touched: 0,
    maxUnsettled: 0,
  };
  let seq = 0;
  let onDelivery: ((delivery: Delivery) => Promise<void>) | undefined;
  let prefetch = 1;
  let running = false;
  let pumpScheduled = false;

  function enqueue(message: { id: string; body: Uint8Array; headers?: Headers }): void {
    seq += 1;
    const copy = (copies.get(message.id) ?? 0) + 1;
    copies.set(message.id, copy);
    ready.push({
      seq,
      id: message.id,
      copy,
      body: message.body,
      headers: { ...(message.headers ?? {}) },
      publishedAt: clock.now(),
      deliveries: 0,
    });
    counters.published += 1;
    schedulePump();
  }

  deadLetters.attach(name, enqueue);

  function schedulePump(): void {
    if (pumpScheduled) return;
    pumpScheduled = true;
    queueMicrotask(() => {
      pumpScheduled = false;
      pump();
    });
  }

  function pump(): void {
    while (running && onDelivery && held.size < prefetch) {
      const entry = returned.shift() ?? ready.shift();
      if (!entry) return;
      deliver(entry, onDelivery);
    }
  }

  /** Every unsettled delivery is lost and goes back, in order, ahead of what was waiting. */
  function loseHeld(): number {
    const lost = [...held];
    for (const slot of lost) {
      counters.lost += 1;
      slot.end('lost');
    }
    for (const slot of lost) requeueFront(slot.entry);
    return lost.length;
  }

  function requeueFront(entry: Entry): void {
    let at = returned.length;
    while (at > 0 && (returned[at - 1] as Entry).seq > entry.seq) at--;
    returned.splice(at, 0, entry);
    schedulePump();
  }

  function deliver(entry: Entry, target: (delivery: Delivery) => Promise<void>): void {
    entry.deliveries += 1;
    counters.delivered += 1;
    if (entry.deliveries > 1) counters.redelivered += 1;
    const record: MemoryDeliveryRecord = {
      id: entry.id,
      copy: entry.copy,
      deliveryCount: entry.deliveries,
      deliveredAt: clock.now(),
    };
    log.push(record);
    let state: 'held' | 'settled' | 'lost' = 'held';
    const slot: Held = {
      entry,
      record,
      cancelTimeout: undefined,
      end(settlement) {
        slot.cancelTimeout?.();
        slot.cancelTimeout = undefined;
        state = settlement === 'lost' ? 'lost' : 'settled';
        record.settlement = settlement;
        record.settledAt = clock.now();
        held.delete(slot);
        schedulePump();
      },
    };
    held.add(slot);
    counters.maxUnsettled = Math.max(counters.maxUnsettled, held.size);
    const armTimeout = () => {
      if (ackTimeoutMs === undefined) return;
      slot.cancelTimeout?.();
      slot.cancelTimeout = clock.setTimer(ackTimeoutMs, () => {
        if (state !== 'held') return;
        counters.lost += 1;
        slot.end('lost');
        requeueFront(entry);
      });
    };
    armTimeout();

    const label = `${entry.id}#${entry.deliveries}`;
    const settle = (action: string): void => {
      if (state === 'settled') {
        throw new InvalidArgumentError(`delivery ${label} was already settled; cannot ${action}`);
      }
      if (state === 'lost') {
        throw new InvalidArgumentError(
          `delivery ${label} is no longer held (its consumer crashed or its ack timeout passed; the message was redelivered); cannot ${action}`,
        );
      }
    };

    const delivery: Delivery = {
      id: entry.id,
      body: entry.body,
      headers: { ...entry.headers },
      source: name,
      deliveryCount: entry.deliveries,
      publishedAt: entry.publishedAt,
      async ack() {
        settle('ack');
        counters.acked += 1;
        slot.end('ack');
      },
      async retryLater(delayMs) {
        if (typeof delayMs !== 'number' || !Number.isFinite(delayMs) || delayMs < 0) {
          throw new InvalidArgumentError(
            `retryLater needs a delay in ms, a finite number >= 0; got ${String(delayMs)}`,
          );
        }
        settle('retryLater');
        counters.retried += 1;
        record.delayMs = delayMs;
        slot.end('retry');
        arm(entry, clock.now() + delayMs);
      },
      async quarantine(history: QuarantineHistory) {
        if (typeof history !== 'object' || history === null) {
          throw new InvalidArgumentError('quarantine needs the message history');
        }
        settle('quarantine');
        deadLetters.add({
          messageId: entry.id,
          body: entry.body,
          headers: entry.headers,
          history,
        });
        counters.quarantined += 1;
        slot.end('quarantine');
      },
      async touch() {
        settle('touch');
        counters.touched += 1;
        armTimeout();
      },
      async release() {
        settle('release');
        counters.released += 1;
        slot.end('release');
        requeueFront(entry);
      },
    };
    // The runtime settles through the delivery; its promise only says it is done with it.
    target(delivery).catch(() => undefined);
  }

  return {
    name,
    deadLetters,

    publish(message) {
      if (typeof message !== 'object' || message === null || !('body' in message)) {
        throw new InvalidArgumentError('publish needs a message with a body');
      }
      const id = message.id ?? `${name}-${counters.published + 1}`;
      if (typeof id !== 'string' || id === '') {
        throw new InvalidArgumentError(`message id must be a non-empty string, got ${String(id)}`);
      }
      const headers = message.headers ?? {};
      for (const [key, value] of Object.entries(headers)) {
        if (typeof value !== 'string') {
          throw new InvalidArgumentError(
            `header ${JSON.stringify(key)} must be a string, got ${typeof value}`,
          );
        }
      }
      enqueue({ id, body: toBytes(message.body), headers });
      return id;
    },

    async start(target, startOptions) {
      const wanted = startOptions?.prefetch;
      if (!Number.isInteger(wanted) || wanted < 1) {
        throw new InvalidArgumentError(`prefetch must be an integer >= 1, got ${String(wanted)}`);
      }
      if (running) {
        throw new InvalidArgumentError(`memory source ${name} is already consuming`);
      }
      onDelivery = target;
      prefetch = wanted;
      running = true;
      for (const [entry, dueAt] of parked) arm(entry, dueAt);
      parked.clear();
      schedulePump();
    },

    async stop() {
      running = false;
    },

    async close() {
      running = false;
      onDelivery = undefined;
      for (const [entry, timer] of delayed) {
        timer.cancel();
        parked.set(entry, timer.dueAt);
      }
      delayed.clear();
      // A closed connection gives its unsettled deliveries back, as a broker does.
      for (const slot of [...held]) {
        counters.lost += 1;
        slot.end('lost');
        requeueFront(slot.entry);
      }
    },

    deliveries(id) {
      const chosen = id === undefined ? log : log.filter((r) => r.id === id);
      return chosen.map((r) => ({ ...r }));
    },

    stats() {
      return {
        ...counters,
        ready: ready.length + returned.length,
        delayed: delayed.size + parked.size,
        unsettled: held.size,
      };
    },

    crash() {
      // The consumer's connection is gone with it: nothing more is delivered to it.
      running = false;
      onDelivery = undefined;
      return loseHeld();
    },

    interrupt() {
      return loseHeld();
    },

    isIdle() {
      return (
        ready.length === 0 &&
        returned.length === 0 &&
        delayed.size === 0 &&
        parked.size === 0 &&
        held.size === 0
      );
    },
  };
}

function toBytes(body: MemoryBody): Uint8Array {
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return encoder.encode(body);
  const text = JSON.stringify(body);
  if (text === undefined) {
    throw new InvalidArgumentError('message body cannot be encoded as JSON');
  }
  return encoder.encode(text);
}
