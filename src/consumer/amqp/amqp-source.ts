import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import { type Clock, systemClock } from '../../clock.js';
import { InvalidArgumentError } from '../../errors.js';
import type { Random } from '../../random.js';
import {
  type BackoffState,
  initialBackoffState,
  nextDelay,
  normalizeBackoff,
} from '../../retry/backoff.js';
import type { Delivery, MessageSource, QuarantineHistory } from '../types.js';
import {
  type AmqpConnectionLike,
  type AmqpConnectionOptions,
  ConfirmPublisher,
  checkAmqpConnectionOptions,
  closeQuietly,
  openAmqpConnection,
} from './amqp-connection.js';
import { AmqpChannelLostError } from './amqp-errors.js';
import {
  AMQP_PREFIX,
  HOP_DELIVERIES,
  HOP_PUBLISHED_AT,
  headerInt,
  originalRawHeaders,
  toStringHeaders,
} from './amqp-headers.js';
import {
  type AmqpTopology,
  type AmqpTopologyOptions,
  declareAmqpTopology,
  resolveAmqpTopology,
} from './amqp-topology.js';
import { pickDelayTier } from './delay-tiers.js';
import { encodeHistory } from './history-headers.js';

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

/** The channel a delivery came on; once it closes, its deliveries cannot be settled. */
interface Session {
  channel: Channel;
  consumerTag: string | undefined;
  alive: boolean;
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
  const report = options.onError ?? (() => {});
  const backoff = normalizeBackoff({ kind: 'exponential', base: 100, cap: 5000, jitter: 'full' });

  let connection: AmqpConnectionLike | undefined;
  let owned = false;
  let publisher: ConfirmPublisher | undefined;
  let session: Session | undefined;
  let onDelivery: ((delivery: Delivery) => Promise<void>) | undefined;
  let prefetch = 1;
  let state: 'idle' | 'starting' | 'running' | 'stopped' | 'closed' = 'idle';
  let retryState: BackoffState = initialBackoffState(backoff);
  let cancelRetry: (() => void) | undefined;
  let cancelling: Promise<void> | undefined;

  async function subscribe(): Promise<void> {
    if (!connection) throw new InvalidArgumentError('the AMQP source is not started');
    const channel = await connection.createChannel();
    const current: Session = { channel, consumerTag: undefined, alive: true };
    channel.on('error', (error: unknown) => report(error));
    channel.on('close', () => {
      current.alive = false;
      if (session === current && state === 'running') scheduleResubscribe();
    });
    try {
      await channel.prefetch(prefetch);
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
          if (state !== 'running') {
            // Stopped while the broker was still sending: give it straight back.
            try {
              channel.nack(message, false, true);
            } catch {
              // The channel is gone: the broker requeues it anyway.
            }
            return;
          }
          const delivery = toDelivery(message, current);
          const handle = onDelivery;
          if (handle) handle(delivery).catch(report);
        },
        { noAck: false },
      );
      current.consumerTag = consumerTag;
    } catch (error) {
      current.alive = false;
      await closeQuietly(channel);
      throw error;
    }
  }

  function scheduleResubscribe(): void {
    if (cancelRetry || state !== 'running') return;
    const [delay, next] = nextDelay(backoff, retryState, random);
    retryState = next;
    cancelRetry = clock.setTimer(delay, () => {
      cancelRetry = undefined;
      if (state !== 'running') return;
      subscribe().then(
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

  function toDelivery(message: ConsumeMessage, current: Session): Delivery {
    const raw = message.properties.headers as Record<string, unknown> | undefined;
    const original = originalRawHeaders(raw);
    const hops = headerInt(raw?.[HOP_DELIVERIES]) ?? 0;
    const brokerCount = headerInt(raw?.['x-delivery-count']);
    // x-delivery-count (quorum queues) counts earlier deliveries of this copy; on a classic
    // queue only the redelivered flag is known, so a crash-redelivery counts once.
    const deliveryCount = hops + (brokerCount ?? (message.fields.redelivered ? 1 : 0)) + 1;
    const publishedAt =
      headerInt(raw?.[HOP_PUBLISHED_AT]) ?? timestampMs(message.properties.timestamp);
    const messageId = message.properties.messageId;
    const id = typeof messageId === 'string' && messageId !== '' ? messageId : randomUUID();
    const receivedAt = clock.now();
    let settled = false;
    let settling = false;

    async function settle(what: string, work: () => Promise<void>): Promise<void> {
      if (settled || settling) {
        throw new InvalidArgumentError(`delivery ${id} is already settled; ${what} is not allowed`);
      }
      if (!current.alive) {
        throw new AmqpChannelLostError(
          `cannot ${what} delivery ${id}: its channel closed; RabbitMQ redelivers the message`,
        );
      }
      settling = true;
      try {
        await work();
        settled = true;
      } finally {
        settling = false;
      }
    }

    function ackOriginal(what: string): void {
      try {
        current.channel.ack(message);
      } catch (error) {
        throw new AmqpChannelLostError(
          `the copy of ${id} was published but the original could not be acked (${what}); RabbitMQ redelivers it and idempotency absorbs the duplicate`,
          error,
        );
      }
    }

    function copyOptions(extra: Record<string, string>): Options.Publish {
      return { ...publishProperties(message, id), headers: { ...original, ...extra } };
    }

    return {
      id,
      body: message.content,
      headers: toStringHeaders(original),
      source: topology.queue,
      deliveryCount,
      publishedAt,
      ack: () =>
        settle('ack', async () => {
          ackOriginal('ack');
        }),
      retryLater: (delayMs: number) =>
        settle('retryLater', async () => {
          const tier = pickDelayTier(topology.tiers, delayMs);
          const extra: Record<string, string> = { [HOP_DELIVERIES]: String(deliveryCount) };
          extra[HOP_PUBLISHED_AT] = String(publishedAt ?? receivedAt);
          await requirePublisher().publish(tier.queue, message.content, copyOptions(extra));
          ackOriginal('retryLater');
        }),
      release: () =>
        settle('release', async () => {
          try {
            current.channel.nack(message, false, true);
          } catch (error) {
            throw new AmqpChannelLostError(
              `could not give back ${id}: its channel closed; RabbitMQ redelivers it`,
              error,
            );
          }
        }),
      quarantine: (history: QuarantineHistory) =>
        settle('quarantine', async () => {
          const extra = encodeHistory(history, { prefix: AMQP_PREFIX });
          await requirePublisher().publish(
            topology.deadLetterQueue,
            message.content,
            copyOptions(extra),
          );
          ackOriginal('quarantine');
        }),
    };
  }

  function requirePublisher(): ConfirmPublisher {
    if (!publisher) throw new InvalidArgumentError('the AMQP source is closed');
    return publisher;
  }

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
      if (state !== 'idle') {
        throw new InvalidArgumentError(`the AMQP source of ${topology.queue} was already started`);
      }
      state = 'starting';
      prefetch = wanted as number;
      onDelivery = handler;
      try {
        const opened = await openAmqpConnection(options, `reprocess:${topology.queue}`);
        connection = opened.connection;
        owned = opened.owned;
        publisher = new ConfirmPublisher(connection);
        if (declare) await declareAmqpTopology(connection, topology);
        state = 'running';
        await subscribe();
      } catch (error) {
        state = 'idle';
        await release();
        throw error;
      }
    },

    async stop() {
      if (state !== 'running' && state !== 'starting') return;
      // From here on, whatever the broker still sends goes straight back (see the consume
      // callback), so stop takes effect now; the consumer is cancelled in the background and
      // the channel stays open so that in-flight deliveries can still be settled.
      state = 'stopped';
      cancelRetry?.();
      cancelRetry = undefined;
      const current = session;
      if (current?.alive && current.consumerTag !== undefined) {
        cancelling = current.channel.cancel(current.consumerTag).then(
          () => undefined,
          (error: unknown) => report(error),
        );
      }
    },

    async close() {
      if (state === 'closed') return;
      if (state === 'running' || state === 'starting') await this.stop();
      state = 'closed';
      await cancelling;
      await release();
    },
  };

  async function release(): Promise<void> {
    const current = session;
    session = undefined;
    if (current) {
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

/** AMQP properties a copy keeps (the message id is fixed, so a copy has the same identity). */
function publishProperties(message: ConsumeMessage, id: string): Options.Publish {
  const p = message.properties;
  const out: Options.Publish = { messageId: id };
  if (typeof p.contentType === 'string') out.contentType = p.contentType;
  if (typeof p.contentEncoding === 'string') out.contentEncoding = p.contentEncoding;
  if (typeof p.correlationId === 'string') out.correlationId = p.correlationId;
  if (typeof p.replyTo === 'string') out.replyTo = p.replyTo;
  if (typeof p.type === 'string') out.type = p.type;
  if (typeof p.appId === 'string') out.appId = p.appId;
  if (typeof p.priority === 'number') out.priority = p.priority;
  if (typeof p.timestamp === 'number') out.timestamp = p.timestamp;
  return out;
}

/**
 * The AMQP `timestamp` property in epoch ms. The spec says seconds, many publishers write
 * milliseconds: a value below 10^11 (1973 in ms, 5138 AD in seconds) is read as seconds.
 */
export function timestampMs(value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return undefined;
  return value < 1e11 ? value * 1000 : value;
}
