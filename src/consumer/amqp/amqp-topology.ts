import type { Channel } from 'amqplib';
import type { Duration } from '../../duration.js';
import { InvalidArgumentError } from '../../errors.js';
import { type AmqpConnectionLike, checkQueueName, closeQuietly } from './amqp-connection.js';
import { DEFAULT_DELAY_TIERS, type DelayTier, formatTier, parseDelayTiers } from './delay-tiers.js';

/**
 * `quorum` (the default): replicated, and RabbitMQ counts deliveries itself
 * (`x-delivery-count`), so a crash-redelivery is counted exactly. `classic`: for brokers or
 * policies without quorum queues; the count of crash-redeliveries is then a lower bound
 * (the `redelivered` flag says "at least once more", not how many times).
 */
export type AmqpQueueType = 'quorum' | 'classic';

/** Names and shape of the queues behind one source queue. */
export interface AmqpTopologyOptions {
  /** The source queue the consumer reads. */
  queue: string;
  /** Where quarantined messages go (default `<queue>.dlq`). */
  deadLetterQueue?: string;
  /** Delay tiers for `retryLater` (default 1s, 3s, 10s, 30s, 1m, 2m, 5m, 15m, 30m, 1h); see {@link DEFAULT_DELAY_TIERS}. */
  delayTiers?: readonly Duration[];
  /** Type of the source, delay and dead-letter queues (default `quorum`). */
  queueType?: AmqpQueueType;
}

/** The resolved topology: every queue name an adapter uses. */
export interface AmqpTopology {
  queue: string;
  deadLetterQueue: string;
  queueType: AmqpQueueType;
  /** Ascending; each holds messages for `delayMs`, then dead-letters them back to `queue`. */
  tiers: readonly DelayTier[];
}

/** Validates the options and names the queues (`<queue>.delay.<tier>`, `<queue>.dlq`); no I/O. */
export function resolveAmqpTopology(options: AmqpTopologyOptions): AmqpTopology {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('AMQP topology options must be an object');
  }
  checkQueueName(options.queue, 'queue');
  const deadLetterQueue = options.deadLetterQueue ?? `${options.queue}.dlq`;
  checkQueueName(deadLetterQueue, 'deadLetterQueue');
  if (deadLetterQueue === options.queue) {
    throw new InvalidArgumentError('deadLetterQueue must differ from queue');
  }
  const queueType = options.queueType ?? 'quorum';
  if (queueType !== 'quorum' && queueType !== 'classic') {
    throw new InvalidArgumentError(
      `queueType must be "quorum" or "classic", got ${JSON.stringify(queueType)}`,
    );
  }
  const tiers = parseDelayTiers(options.delayTiers ?? DEFAULT_DELAY_TIERS).map((delayMs) => ({
    delayMs,
    queue: `${options.queue}.delay.${formatTier(delayMs)}`,
  }));
  for (const tier of tiers) checkQueueName(tier.queue, 'delay tier queue');
  return { queue: options.queue, deadLetterQueue, queueType, tiers };
}

/**
 * Declares (idempotently) the durable source queue, one delay queue per tier, and the
 * dead-letter queue. A delay queue has a queue-wide `x-message-ttl` and dead-letters expired
 * messages through the default exchange straight back to the source queue. Quorum delay
 * queues use at-least-once dead-lettering, so a message never vanishes between the tier and
 * the source. Throws {@link InvalidArgumentError} when a queue exists with other arguments.
 */
export async function declareAmqpTopology(
  connection: AmqpConnectionLike,
  options: AmqpTopologyOptions | AmqpTopology,
): Promise<AmqpTopology> {
  const topology = isResolved(options) ? options : resolveAmqpTopology(options);
  const typeArgs = { 'x-queue-type': topology.queueType };
  let channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await assertQueue(channel, topology.queue, typeArgs);
    if (topology.queueType === 'quorum') {
      channel = await assertDeadLetterQueue(connection, channel, topology.deadLetterQueue);
    } else {
      await assertQueue(channel, topology.deadLetterQueue, typeArgs);
    }
    for (const tier of topology.tiers) {
      await assertQueue(channel, tier.queue, {
        ...typeArgs,
        'x-message-ttl': tier.delayMs,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': topology.queue,
        ...(topology.queueType === 'quorum'
          ? { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' }
          : {}),
      });
    }
  } finally {
    await closeQuietly(channel);
  }
  return topology;
}

/**
 * Deletes every queue of a topology, messages included (tests, teardown). Never call it on
 * queues that hold messages you want.
 */
export async function deleteAmqpTopology(
  connection: AmqpConnectionLike,
  topology: AmqpTopology,
): Promise<void> {
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    for (const name of [
      topology.queue,
      topology.deadLetterQueue,
      ...topology.tiers.map((t) => t.queue),
    ]) {
      await channel.deleteQueue(name);
    }
  } finally {
    await closeQuietly(channel);
  }
}

async function assertQueue(
  channel: Channel,
  queue: string,
  args: Record<string, unknown>,
): Promise<void> {
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
  } catch (error) {
    // 406 PRECONDITION_FAILED: the queue exists with other arguments. Anything else (the
    // connection went away) is not the caller's mistake and goes up as it is.
    if ((error as { code?: unknown }).code !== 406) throw error;
    throw declareRefused(queue, error);
  }
}

/** The caller's error for a queue that exists with other arguments (a refused declare). */
function declareRefused(queue: string, error: unknown): InvalidArgumentError {
  const detail = error instanceof Error ? error.message : String(error);
  return new InvalidArgumentError(
    `could not declare queue ${JSON.stringify(queue)} (${detail}); when it exists with other arguments, declare it with the same queueType and delay tiers, or pass declare: false and manage the topology yourself`,
  );
}

/**
 * The delivery limit of a quorum dead-letter queue this library declares. Looking at
 * quarantined messages (`list`, `dlq show`, a dry run, the messages a filtered redrive leaves)
 * takes each one and hands it back, and a quorum queue counts every hand-back as a delivery:
 * past its limit (RabbitMQ 4.0 sets 20 by default) it drops the message, as it has no
 * dead-letter exchange. A billion looks is no limit in practice.
 */
export const DEAD_LETTER_DELIVERY_LIMIT = 1_000_000_000;

/**
 * Declares a quorum dead-letter queue with {@link DEAD_LETTER_DELIVERY_LIMIT}. One that exists
 * with another delivery limit, or none (declared by hand, or by an earlier version), is kept
 * as it is: RabbitMQ refuses to redeclare it with this argument, so it is checked (passively)
 * on a new channel instead, a refused declare having closed the first. Its other arguments
 * are then still checked by declaring it without a limit when it has none. Returns the
 * channel to go on with.
 */
async function assertDeadLetterQueue(
  connection: AmqpConnectionLike,
  channel: Channel,
  queue: string,
): Promise<Channel> {
  const quorum = { 'x-queue-type': 'quorum' };
  const limited = { ...quorum, 'x-delivery-limit': DEAD_LETTER_DELIVERY_LIMIT };
  if (await declaredUnlessLimit(channel, queue, limited)) return channel;
  // Without a limit: the arguments of a queue declared before this one had it.
  let fresh = await reopen(connection, channel);
  if (await declaredUnlessLimit(fresh, queue, quorum)) return fresh;
  // A limit of its own (set by hand): accepted as it is, as long as the queue is there.
  fresh = await reopen(connection, fresh);
  await fresh.checkQueue(queue);
  return fresh;
}

/**
 * Declares `queue` with `args`; false when RabbitMQ refused only for its `x-delivery-limit`
 * (the refusal closed the channel). Any other refusal is the caller's {@link declareRefused}.
 */
async function declaredUnlessLimit(
  channel: Channel,
  queue: string,
  args: Record<string, unknown>,
): Promise<boolean> {
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
    return true;
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    if ((error as { code?: unknown }).code !== 406) throw error;
    if (!detail.includes("'x-delivery-limit'")) throw declareRefused(queue, error);
    return false;
  }
}

/** A new channel in place of `closed`, which a refused declare closed. */
async function reopen(connection: AmqpConnectionLike, closed: Channel): Promise<Channel> {
  await closeQuietly(closed);
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  return channel;
}

function isResolved(options: AmqpTopologyOptions | AmqpTopology): options is AmqpTopology {
  return Array.isArray((options as AmqpTopology).tiers) && 'queueType' in options;
}
