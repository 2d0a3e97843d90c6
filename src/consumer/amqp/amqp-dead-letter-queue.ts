import type { Channel, GetMessage } from 'amqplib';
import { type Clock, elapsedOn, sleep, systemClock } from '../../clock.js';
import { checkQuarantineFilter, matchesFilter } from '../quarantine-filter.js';
import type { DeadLetterQueue, QuarantineFilter, QuarantinedMessage } from '../types.js';
import {
  type AmqpConnectionLike,
  type AmqpConnectionOptions,
  ConfirmPublisher,
  checkAmqpConnectionOptions,
  checkQueueName,
  closeQuietly,
  openAmqpConnection,
} from './amqp-connection.js';
import { AmqpPublishError } from './amqp-errors.js';
import {
  AMQP_PREFIX,
  HOP_PUBLISHED_AT,
  originalRawHeaders,
  toStringHeaders,
} from './amqp-headers.js';
import { decodeHistory } from './history-headers.js';

/** Options of {@link createAmqpDeadLetterQueue} besides the connection. */
export interface AmqpDeadLetterQueueSettings {
  /** The source queue whose quarantine this is. */
  queue: string;
  /** The dead-letter queue (default `<queue>.dlq`, as {@link createAmqpSource} names it). */
  deadLetterQueue?: string;
  /** Clock of quarantine ages and of the redrive rate limit. */
  clock?: Clock;
}

/** Options of {@link createAmqpDeadLetterQueue}: a URL or a connection, and the queue. */
export type AmqpDeadLetterQueueOptions = AmqpConnectionOptions & AmqpDeadLetterQueueSettings;

/** A RabbitMQ {@link DeadLetterQueue} that owns its connection when given a URL. */
export interface AmqpDeadLetterQueue extends DeadLetterQueue {
  readonly queue: string;
  readonly deadLetterQueue: string;
  /** Number of messages in the dead-letter queue (ready, not held by anyone). */
  count(): Promise<number>;
  /** Closes the connection it opened itself. */
  close(): Promise<void>;
}

/**
 * The dead-letter queue of a RabbitMQ source. AMQP queues cannot be browsed, so listing takes
 * every message with `basic.get` (unacked), reads it and hands it back with the channel's
 * close: messages held by a concurrent listing or redrive are not seen by the other. A
 * redrive republishes a match to the queue its history names (the default exchange,
 * `mandatory`, publisher-confirmed), with the publisher's properties and headers and a fresh
 * publication time, and acks it in the dead-letter queue only after the confirm. `id` of a
 * listed message is its AMQP message id.
 */
export function createAmqpDeadLetterQueue(
  options: AmqpDeadLetterQueueOptions,
): AmqpDeadLetterQueue {
  checkAmqpConnectionOptions(options, 'createAmqpDeadLetterQueue');
  checkQueueName(options.queue, 'queue');
  const deadLetterQueue = options.deadLetterQueue ?? `${options.queue}.dlq`;
  checkQueueName(deadLetterQueue, 'deadLetterQueue');
  const clock = options.clock ?? systemClock;
  let opened: Promise<{ connection: AmqpConnectionLike; owned: boolean }> | undefined;
  /** The last closing: a close() while one runs waits for it. */
  let closing: Promise<void> | undefined;

  function open() {
    opened ??= openAmqpConnection(options, `reprocess-dlq:${options.queue}`);
    return opened;
  }

  async function shut(
    current: Promise<{ connection: AmqpConnectionLike; owned: boolean }>,
  ): Promise<void> {
    const { connection, owned } = await current.catch(() => ({
      connection: undefined,
      owned: false,
    }));
    if (owned && connection) {
      try {
        await connection.close();
      } catch {
        // Already closed.
      }
    }
  }

  function read(message: GetMessage): QuarantinedMessage {
    const raw = message.properties.headers as Record<string, unknown> | undefined;
    const internal = toStringHeaders(
      Object.fromEntries(
        Object.entries(raw ?? {}).filter(([name]) => name.startsWith(AMQP_PREFIX)),
      ),
    );
    const messageId = message.properties.messageId;
    return {
      id:
        typeof messageId === 'string' && messageId !== ''
          ? messageId
          : `dlq-${message.fields.deliveryTag}`,
      body: message.content,
      headers: toStringHeaders(originalRawHeaders(raw)),
      history: decodeHistory(internal, { prefix: AMQP_PREFIX }, options.queue),
    };
  }

  /**
   * Takes up to the queue's current length with basic.get (unacked), calling `visit` on each
   * until it says stop; `visit` acks what it moves. Then hands the rest back by closing the
   * channel, and waits (up to 5 s) until the queue shows them again: a quorum queue requeues
   * asynchronously, and a listing followed at once by another must see the same messages.
   */
  async function scan(
    visit: (channel: Channel, message: GetMessage) => Promise<'keep' | 'acked' | 'stop'>,
  ): Promise<void> {
    const { connection } = await open();
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    let initial = 0;
    let acked = 0;
    try {
      initial = (await channel.checkQueue(deadLetterQueue)).messageCount;
      for (let i = 0; i < initial; i++) {
        const message = await channel.get(deadLetterQueue, { noAck: false });
        if (message === false) break;
        const verdict = await visit(channel, message);
        if (verdict === 'acked') acked += 1;
        if (verdict === 'stop') break;
      }
    } finally {
      await closeQuietly(channel);
    }
    await waitForReady(connection, initial - acked);
  }

  async function waitForReady(connection: AmqpConnectionLike, expected: number): Promise<void> {
    const deadline = elapsedOn(clock) + 5000;
    while (expected > 0) {
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      let ready: number;
      try {
        ready = (await channel.checkQueue(deadLetterQueue)).messageCount;
      } finally {
        await closeQuietly(channel);
      }
      if (ready >= expected || elapsedOn(clock) >= deadline) return;
      await sleep(clock, 20);
    }
  }

  async function withChannel<T>(work: (channel: Channel) => Promise<T>): Promise<T> {
    const { connection } = await open();
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    try {
      return await work(channel);
    } finally {
      await closeQuietly(channel);
    }
  }

  return {
    queue: options.queue,
    deadLetterQueue,

    async list(filter?: QuarantineFilter) {
      checkQuarantineFilter(filter);
      const now = clock.now();
      const out: QuarantinedMessage[] = [];
      if (filter?.limit === 0) return out;
      await scan(async (_channel, message) => {
        const item = read(message);
        if (matchesFilter(item.history, filter, now)) out.push(item);
        return filter?.limit === undefined || out.length < filter.limit ? 'keep' : 'stop';
      });
      return out;
    },

    async redrive(filter) {
      const rate = checkQuarantineFilter(filter);
      const spacing = rate === undefined ? 0 : 1000 / rate;
      const now = clock.now();
      const { connection } = await open();
      const publisher = new ConfirmPublisher(connection);
      let moved = 0;
      let taken = false;
      try {
        await scan(async (channel, message) => {
          taken = true;
          if (filter?.limit !== undefined && moved >= filter.limit) return 'stop';
          const item = read(message);
          if (!matchesFilter(item.history, filter, now)) return 'keep';
          if (moved > 0 && spacing > 0) await sleep(clock, spacing);
          const properties = { ...message.properties };
          const headers = {
            ...originalRawHeaders(message.properties.headers as Record<string, unknown>),
            // A fresh age: a redrive is a new start, not a message that expired in quarantine.
            [HOP_PUBLISHED_AT]: String(clock.now()),
          };
          try {
            await publisher.publish(item.history.source, message.content, {
              ...definedProperties(properties),
              headers,
            });
          } catch (error) {
            throw new AmqpPublishError(
              `redrive stopped after ${moved} message(s): ${item.id} could not be republished to ${item.history.source}; it stays in ${deadLetterQueue}`,
              error,
            );
          }
          try {
            channel.ack(message);
          } catch (error) {
            throw new AmqpPublishError(
              `redrive stopped after ${moved} message(s): ${item.id} was republished to ${item.history.source} but could not be removed from ${deadLetterQueue}; a later redrive sends it again, and its idempotency key makes that a replay`,
              error,
            );
          }
          moved += 1;
          return 'acked';
        });
      } catch (error) {
        // Whatever cut the run short once it had taken messages (the connection dropped
        // while they were taken or given back), the caller learns how many had moved. Before
        // that (no such queue, no connection), the error is the one list() gives.
        if (error instanceof AmqpPublishError || !taken) throw error;
        throw new AmqpPublishError(
          `redrive stopped after ${moved} message(s): ${error instanceof Error ? error.message : String(error)}; the messages not moved stay in ${deadLetterQueue}`,
          error,
        );
      } finally {
        await publisher.close();
      }
      return moved;
    },

    async count() {
      return withChannel(
        async (channel) => (await channel.checkQueue(deadLetterQueue)).messageCount,
      );
    },

    close() {
      const current = opened;
      opened = undefined;
      if (current) closing = shut(current);
      return closing ?? Promise.resolve();
    },
  };
}

/** The message's AMQP properties worth republishing, without the undefined ones. */
function definedProperties(properties: GetMessage['properties']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of [
    'contentType',
    'contentEncoding',
    'correlationId',
    'replyTo',
    'messageId',
    'timestamp',
    'type',
    'appId',
    'priority',
  ] as const) {
    const value = properties[name];
    if (value !== undefined && value !== null) out[name] = value;
  }
  return out;
}
