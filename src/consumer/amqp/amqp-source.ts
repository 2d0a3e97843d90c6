import { type Clock, systemClock } from '../../clock.js';
import { InvalidArgumentError } from '../../errors.js';
import type { Random } from '../../random.js';
import {
  type BackoffState,
  initialBackoffState,
  nextDelay,
  normalizeBackoff,
} from '../../retry/backoff.js';
import type { Delivery, MessageSource } from '../types.js';
import {
  type AmqpConnectionLike,
  type AmqpConnectionOptions,
  ConfirmPublisher,
  checkAmqpConnectionOptions,
  closeQuietly,
  openAmqpConnection,
} from './amqp-connection.js';
import { AckTracker } from './amqp-acks.js';
import { AmqpDelivery, type AmqpDeliveryContext, type AmqpSession } from './amqp-delivery.js';
import { AmqpChannelLostError } from './amqp-errors.js';
import {
  type AmqpTopology,
  type AmqpTopologyOptions,
  declareAmqpTopology,
  resolveAmqpTopology,
} from './amqp-topology.js';
import { observe } from '../../observe.js';

/** Options of {@link createAmqpSource} besides the connection. */
export interface AmqpSourceSettings extends AmqpTopologyOptions {
  /** Declare the queues at start (default true); false when you manage the topology. */
  declare?: boolean;
  /** Hears what the adapter cannot throw to anyone: a lost channel, a failed re-subscribe. */
  onError?: (error: unknown) => void;
  /** Clock and randomness of the re-subscribe backoff (100 ms doubling to 5 s, full jitter). */
  clock?: Clock;
  random?: Random;
}

/** Options of {@link createAmqpSource}: a URL or a connection, and the queue. */
export type AmqpSourceOptions = AmqpConnectionOptions & AmqpSourceSettings;

/** A RabbitMQ {@link MessageSource} (its `name` is the queue name) with the queues it uses. */
export interface AmqpSource extends MessageSource {
  readonly topology: AmqpTopology;
}

/**
 * A RabbitMQ source (amqplib). Deliveries settle like this:
 *
 * - `ack`: `basic.ack` on the channel that delivered it;
 * - `retryLater(ms)`: publish a copy to the delay tier for `ms` (rounded up to a tier) and
 *   wait for the publisher confirm, then ack the original; the tier's TTL dead-letters the copy
 *   back to the source. A crash between the two leaves both: a duplicate delivery, which
 *   idempotency absorbs; never a loss;
 * - `quarantine(history)`: publish a copy with the history headers to the dead-letter queue,
 *   confirmed, then ack;
 * - `release()`: `basic.nack` with requeue: back in the queue at once, counted as a delivery.
 *
 * Copies keep the payload, properties and the publisher's headers untouched and carry the
 * delivery count (`x-reprocess-deliveries`, since a new copy starts at x-delivery-count 0) and
 * the original publication time (`x-reprocess-published-at`). Prefetch is `basic.qos`: RabbitMQ
 * sends no more than `prefetch` unacked messages. When the channel or connection drops, the
 * broker requeues what was unacked and the source subscribes again once it can; settling a
 * delivery of the dead channel rejects with {@link AmqpChannelLostError}.
 */
export function createAmqpSource(options: AmqpSourceOptions): AmqpSource {
  checkAmqpConnectionOptions(options, 'createAmqpSource');
  const topology = resolveAmqpTopology(options);
  const declare = options.declare ?? true;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  // A throwing or rejecting onError is dropped: it runs inside the driver's event handlers.
  const report = (error: unknown): void => observe(options.onError, error);
  const backoff = normalizeBackoff({ kind: 'exponential', base: 100, cap: 5000, jitter: 'full' });

  let connection: AmqpConnectionLike | undefined;
  let owned = false;
  let publisher: ConfirmPublisher | undefined;
  let session: AmqpSession | undefined;
  /**
   * Sessions of earlier runs (before a stop and a new start) with deliveries still to settle:
   * each is closed once they are (checked at the next start), or with the source.
   */
  const retired: AmqpSession[] = [];
  /** Counts starts and stops: a restart goes on only while no other start or stop came. */
  let generation = 0;

  /** Closes the channels of earlier runs that have nothing left to settle. */
  async function closeSettled(): Promise<void> {
    for (const old of [...retired]) {
      if (old.alive && old.acks.unsettled > 0) continue;
      retired.splice(retired.indexOf(old), 1);
      old.acks.flushNow();
      old.alive = false;
      await closeQuietly(old.channel);
    }
  }
  let onDelivery: ((delivery: Delivery) => Promise<void>) | undefined;
  let prefetch = 1;
  let state: 'idle' | 'starting' | 'running' | 'stopped' | 'closed' = 'idle';
  let retryState: BackoffState = initialBackoffState(backoff);
  let cancelRetry: (() => void) | undefined;
  let cancelling: Promise<void> | undefined;
  /** The connection being opened, or opened (see connect()). */
  let connecting: Promise<void> | undefined;
  /** A run has started: a later start that fails keeps the connection for the next one. */
  let ran = false;
  /** The one closing, once close() was called (two closing at once hung in amqplib). */
  let closed: Promise<void> | undefined;

  /** Whether the run of generation `mine` is the one running (no stop or newer start since). */
  function runs(mine: number): boolean {
    return state === 'running' && generation === mine;
  }

  /**
   * Opens the connection and declares the topology, once: every start after the first
   * reuses them. A failure lets go of what was opened, and the next start tries again.
   */
  function connect(): Promise<void> {
    connecting ??= (async () => {
      const opened = await openAmqpConnection(options, `reprocess:${topology.queue}`, report);
      connection = opened.connection;
      owned = opened.owned;
      publisher = new ConfirmPublisher(connection);
      if (declare) await declareAmqpTopology(connection, topology);
    })().catch(async (error: unknown) => {
      connecting = undefined;
      await release();
      throw error;
    });
    return connecting;
  }

  async function subscribe(mine: number): Promise<void> {
    if (!connection) throw new InvalidArgumentError('the AMQP source is not started');
    const channel = await connection.createChannel();
    const current: AmqpSession = {
      channel,
      consumerTag: undefined,
      alive: true,
      acks: new AckTracker(channel, () => current.alive, report),
    };
    channel.on('error', (error: unknown) => report(error));
    channel.on('close', () => {
      current.alive = false;
      if (session === current && state === 'running') scheduleResubscribe();
    });
    try {
      await channel.prefetch(prefetch);
      if (!runs(mine)) {
        // stop() came while the channel opened (a resubscribe after a cut, say).
        current.alive = false;
        await closeQuietly(channel);
        return;
      }
      session = current;
      const { consumerTag } = await channel.consume(
        topology.queue,
        (message) => {
          if (message === null) {
            // The broker cancelled us (the queue was deleted): start over on a new channel.
            report(
              new AmqpChannelLostError(`RabbitMQ cancelled the consumer of ${topology.queue}`),
            );
            current.alive = false;
            void closeQuietly(channel);
            return;
          }
          if (!runs(mine)) {
            // Stopped while the broker was still sending: give it straight back, and make
            // sure the consumer is cancelled, or the broker hands it to us again at once.
            cancelConsumer(current);
            const entry = current.acks.track(message, '');
            try {
              channel.nack(message, false, true);
              current.acks.done(entry);
            } catch {
              // The channel is gone: the broker requeues it anyway.
            }
            return;
          }
          const delivery = new AmqpDelivery(message, current, context);
          const handle = onDelivery;
          if (handle) handle(delivery).catch(report);
        },
        { noAck: false },
      );
      current.consumerTag = consumerTag;
      // stop() came while the consumer was being registered: it had no tag to cancel then.
      if (!runs(mine)) cancelConsumer(current);
    } catch (error) {
      current.alive = false;
      await closeQuietly(channel);
      throw error;
    }
  }

  /**
   * Cancels the session's consumer, once; the channel stays open so that deliveries in flight
   * can still be settled. Without a tag yet (consume still in flight) it waits: subscribe()
   * cancels as soon as the tag arrives.
   */
  function cancelConsumer(current: AmqpSession): void {
    if (current.cancelled || !current.alive || current.consumerTag === undefined) return;
    current.cancelled = true;
    cancelling = current.channel.cancel(current.consumerTag).then(
      () => undefined,
      (error: unknown) => report(error),
    );
  }

  function scheduleResubscribe(): void {
    if (cancelRetry || state !== 'running') return;
    const [delay, next] = nextDelay(backoff, retryState, random);
    retryState = next;
    cancelRetry = clock.setTimer(delay, () => {
      cancelRetry = undefined;
      if (state !== 'running') return;
      subscribe(generation).then(
        () => {
          retryState = initialBackoffState(backoff);
        },
        (error: unknown) => {
          report(error);
          scheduleResubscribe();
        },
      );
    });
  }

  const context: AmqpDeliveryContext = {
    topology,
    now: () => clock.now(),
    publisher: () => publisher,
  };

  return {
    name: topology.queue,
    topology,

    async start(handler, startOptions) {
      if (typeof handler !== 'function') {
        throw new InvalidArgumentError('start(onDelivery): onDelivery must be a function');
      }
      const wanted = startOptions?.prefetch;
      if (!Number.isInteger(wanted) || (wanted as number) < 1 || (wanted as number) > 65535) {
        throw new InvalidArgumentError(
          `prefetch must be an integer from 1 to 65535, got ${String(wanted)}`,
        );
      }
      if (state !== 'idle' && state !== 'stopped') {
        throw new InvalidArgumentError(
          `the AMQP source of ${topology.queue} is ${state === 'closed' ? 'closed' : 'already started'}`,
        );
      }
      // A first start, or a start again after stop(): the connection is opened once and kept
      // until close(); each run has a channel and a consumer of its own. A stopped run's
      // channel stays open while deliveries are still being settled on it.
      state = 'starting';
      const mine = ++generation;
      prefetch = wanted as number;
      onDelivery = handler;
      try {
        await connect();
        await cancelling;
        // A stop() or another start() since this one began: that one decides.
        if (!starting() || generation !== mine) return;
        if (session) retired.push(session);
        session = undefined;
        await closeSettled();
        if (!starting() || generation !== mine) return;
        state = 'running';
        await subscribe(mine);
        ran = true;
      } catch (error) {
        if (generation === mine && (state === 'starting' || state === 'running')) {
          if (ran) {
            state = 'stopped';
          } else {
            // No run ever started (a queue that is not there, say): the connection goes too,
            // as if start had never been called, or it would keep the process alive.
            state = 'idle';
            connecting = undefined;
            await release();
          }
        }
        throw error;
      }
    },

    async stop() {
      if (state !== 'running' && state !== 'starting') return;
      generation++;
      // From here on, whatever the broker still sends goes straight back (see the consume
      // callback), so stop takes effect now; the consumer is cancelled in the background and
      // the channel stays open so that in-flight deliveries can still be settled.
      state = 'stopped';
      cancelRetry?.();
      cancelRetry = undefined;
      if (session) cancelConsumer(session);
    },

    close() {
      closed ??= (async () => {
        if (state === 'running' || state === 'starting') await this.stop();
        state = 'closed';
        generation++;
        // A start still connecting: its connection is released here, with the rest.
        await connecting?.catch(() => {});
        await cancelling;
        await release();
      })();
      return closed;
    },
  };

  /**
   * Whether start() may go on: stop() and close() change the state while it awaits the
   * broker. (A function, so that the compiler does not keep the state narrowed across awaits.)
   */
  function starting(): boolean {
    return state === 'starting';
  }

  async function release(): Promise<void> {
    for (const old of retired.splice(0)) {
      old.acks.flushNow();
      old.alive = false;
      await closeQuietly(old.channel);
    }
    const current = session;
    session = undefined;
    if (current) {
      // The acks of handlers that finished during stop() still wait for the next turn of the
      // event loop: sent now, or closing the channel would drop them (and the broker would
      // redeliver messages whose outcome was already reported).
      current.acks.flushNow();
      current.alive = false;
      await closeQuietly(current.channel);
    }
    await publisher?.close();
    publisher = undefined;
    if (owned && connection) {
      try {
        await connection.close();
      } catch {
        // Already closed.
      }
    }
    connection = undefined;
  }
}
