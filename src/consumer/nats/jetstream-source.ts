import {
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type Clock, systemClock } from '../../clock.js';
import { InvalidArgumentError } from '../../errors.js';
import type { Delivery, MessageSource } from '../types.js';
import { SendBatch } from '../amqp/send-batch.js';
import { type DeliveryContext, JetStreamDelivery } from './jetstream-delivery.js';
import { JetStreamSettleError } from './jetstream-errors.js';
import {
  type JetStreamTopology,
  type JetStreamTopologyOptions,
  declareJetStreamTopology,
  resolveJetStreamTopology,
} from './jetstream-topology.js';
import {
  type NatsConnectionOptions,
  checkNatsConnectionOptions,
  openNatsConnection,
} from './nats-connection.js';
import { Slots } from './slots.js';
import { observe } from '../../observe.js';

/** Options of {@link createJetStreamSource} besides the connection. */
export interface JetStreamSourceSettings extends JetStreamTopologyOptions {
  /** Create the streams and the consumer when missing (default true). */
  declare?: boolean;
  /** Hears what the adapter cannot throw to anyone (consumer status problems, a failed nak). */
  onError?: (error: unknown) => void;
  /** Clock of the AckWait bookkeeping (default: the system clock). */
  clock?: Clock;
}

/** Options of {@link createJetStreamSource}: servers or a connection, the stream and the durable. */
export type JetStreamSourceOptions = NatsConnectionOptions & JetStreamSourceSettings;

/** A NATS JetStream {@link MessageSource} (its `name` is the stream name) with its topology. */
export interface JetStreamSource extends MessageSource {
  readonly topology: JetStreamTopology;
}

/**
 * A NATS JetStream source: a durable pull consumer with explicit acks. Deliveries settle
 * like this:
 *
 * - `ack`: `+ACK`;
 * - `retryLater(ms)`: `-NAK` with that delay: JetStream itself redelivers it after `ms`, and
 *   counts the delivery;
 * - `quarantine(history)`: publish a copy (payload, the publisher's headers, the history
 *   headers) to the dead-letter stream and wait for its publish ack, then `+TERM` so JetStream
 *   never delivers it again. The copy's `Nats-Msg-Id` is `rp-q:<stream>:<sequence>`: a crash
 *   between the two redelivers the message, and its second quarantine is deduplicated;
 * - `touch()`: `+WPI` (working): AckWait starts again;
 * - `release()`: `-NAK` without delay: redelivered at once.
 *
 * The source's `name`, and `Delivery.source`, is the stream name (the default operation scope
 * of the runtime); the subject a message was published to travels with it into quarantine
 * (`Reprocess-Subject`) and a redrive publishes it back there. `deliveryCount` is JetStream's own (`info.deliveryCount`), `publishedAt` the stream's
 * timestamp of the message, `id` its `Nats-Msg-Id` (or `<stream>:<sequence>`). The source
 * hands out at most `prefetch` unsettled messages and pulls `prefetch` at a time, so up to
 * `prefetch` more may wait in the client (their AckWait runs).
 */
export function createJetStreamSource(options: JetStreamSourceOptions): JetStreamSource {
  checkNatsConnectionOptions(options, 'createJetStreamSource');
  const topology = resolveJetStreamTopology(options);
  const declare = options.declare ?? true;
  // A throwing or rejecting onError is dropped: it runs inside the driver's event handlers.
  const report = (error: unknown): void => observe(options.onError, error);
  const clock = options.clock ?? systemClock;

  let connection: NatsConnection | undefined;
  let owned = false;
  let js: JetStreamClient | undefined;
  let messages: ConsumerMessages | undefined;
  let slots: Slots | undefined;
  let state: 'idle' | 'starting' | 'running' | 'stopped' | 'closed' = 'idle';
  let pump: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  /** Counts starts and stops: a start goes on only while no other start or stop came. */
  let generation = 0;
  /** The connection being opened, or opened (see connect()). */
  let connecting: Promise<void> | undefined;
  /** A run has started: a later start that fails keeps the connection for the next one. */
  let ran = false;
  /** The one closing of the source, once close() was called. */
  let closed: Promise<void> | undefined;

  const context: DeliveryContext = {
    topology,
    clock,
    client: () => js,
    maxPayload: () => connection?.info?.max_payload,
    acks: new SendBatch(report),
  };

  async function run(
    iterator: ConsumerMessages,
    gate: Slots,
    onDelivery: (delivery: Delivery) => Promise<void>,
  ): Promise<void> {
    const handBack = (message: JsMsg) => {
      // Stopping: hand it straight back instead of letting it wait out AckWait.
      try {
        message.nak();
      } catch {
        // Connection gone: JetStream redelivers after AckWait.
      }
    };
    for await (const message of iterator) {
      if (state !== 'running') {
        handBack(message);
        continue;
      }
      if (!gate.tryAcquire()) await gate.acquire();
      if (state !== 'running') {
        gate.release();
        handBack(message);
        continue;
      }
      onDelivery(new JetStreamDelivery(message, gate, context)).catch(report);
    }
  }

  return {
    name: topology.stream,
    topology,

    async start(onDelivery, startOptions) {
      if (typeof onDelivery !== 'function') {
        throw new InvalidArgumentError('start(onDelivery): onDelivery must be a function');
      }
      const prefetch = startOptions?.prefetch;
      if (
        !Number.isInteger(prefetch) ||
        (prefetch as number) < 1 ||
        (prefetch as number) > 10_000
      ) {
        throw new InvalidArgumentError(
          `prefetch must be an integer from 1 to 10000, got ${String(prefetch)}`,
        );
      }
      if (state !== 'idle' && state !== 'stopped') {
        throw new InvalidArgumentError(
          `the JetStream source of ${topology.stream} is ${state === 'closed' ? 'closed' : 'already started'}`,
        );
      }
      // A first start, or a start again after stop(): the connection is opened once and kept
      // until close(); each run has a pull subscription of its own, once the stopped one has
      // ended and its unstarted messages were given back.
      state = 'starting';
      const mine = ++generation;
      // This start goes on only while no stop() or other start() came meanwhile.
      const going = () => starting() && generation === mine;
      try {
        await connect();
        await closing;
        await pump;
        if (!going() || js === undefined) return;
        const consumer = await js.consumers.get(topology.stream, topology.durable);
        // stop() or close() may come while this awaits the server: then nothing is consumed
        // (the connection stays for the next start; close() lets go of it).
        if (!going()) return;
        const pulling = await consumer.consume({ max_messages: prefetch as number });
        if (!going()) {
          // Not awaited: closing a subscription that was never read from does not settle.
          void pulling.close().catch(() => {});
          return;
        }
        messages = pulling;
        slots = new Slots(prefetch as number);
        state = 'running';
        ran = true;
        const iterator = messages;
        void (async () => {
          for await (const status of iterator.status()) {
            if (status.type === 'consumer_deleted' || status.type === 'consumer_not_found') {
              report(
                new JetStreamSettleError(`JetStream consumer problem: ${JSON.stringify(status)}`),
              );
            }
          }
        })().catch(() => {});
        pump = run(iterator, slots, onDelivery).catch(report);
      } catch (error) {
        if (going()) {
          if (ran) {
            state = 'stopped';
          } else {
            // No run ever started (a stream that is not there, say): the connection goes too,
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
      // From here on the pump hands every message straight back (nak), so stop takes effect
      // now; the pull subscription is closed in the background. The iterator only ends once
      // the pump reads on, so a pump waiting for a slot is woken first.
      state = 'stopped';
      slots?.releaseWaiters();
      closing = messages?.close().then(
        () => undefined,
        (error: unknown) => report(error),
      );
    },

    close() {
      closed ??= (async () => {
        if (state === 'running' || state === 'starting') await this.stop();
        state = 'closed';
        generation++;
        // A start still connecting: its connection is released here, with the rest.
        await connecting?.catch(() => {});
        await closing;
        await pump;
        await release();
      })();
      return closed;
    },
  };

  /**
   * Whether start() may go on: stop() and close() change the state while it awaits the
   * server. (A function, so that the compiler does not keep the state narrowed across awaits.)
   */
  function starting(): boolean {
    return state === 'starting';
  }

  /**
   * Opens the connection and declares the topology, once: every start after the first
   * reuses them. A failure lets go of what was opened, and the next start tries again.
   */
  function connect(): Promise<void> {
    connecting ??= (async () => {
      const opened = await openNatsConnection(options, `reprocess:${topology.stream}`);
      connection = opened.connection;
      owned = opened.owned;
      js = jetstream(connection);
      if (declare) await declareJetStreamTopology(await jetstreamManager(connection), topology);
    })().catch(async (error: unknown) => {
      connecting = undefined;
      await release();
      throw error;
    });
    return connecting;
  }

  async function release(): Promise<void> {
    messages = undefined;
    js = undefined;
    if (owned && connection) {
      try {
        await connection.drain();
      } catch {
        await connection.close().catch(() => {});
      }
    }
    connection = undefined;
  }
}
