import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import { InvalidArgumentError } from '../../errors.js';
import type { Delivery, Headers, QuarantineHistory } from '../types.js';
import type { AckEntry, AckTracker } from './amqp-acks.js';
import type { ConfirmPublisher } from './amqp-connection.js';
import { AmqpChannelLostError } from './amqp-errors.js';
import {
  AMQP_PREFIX,
  HOP_DELIVERIES,
  HOP_PUBLISHED_AT,
  headerInt,
  originalRawHeaders,
  publisherStringHeaders,
} from './amqp-headers.js';
import type { AmqpTopology } from './amqp-topology.js';
import { pickDelayTier } from './delay-tiers.js';
import { MAX_HEADER_TABLE_BYTES, headerTableBytes } from './header-table-size.js';
import { encodeHistory } from './history-headers.js';
import { headOf } from '../../clip-text.js';

/** The channel a delivery came on; once it closes, its deliveries cannot be settled. */
export interface AmqpSession {
  channel: Channel;
  consumerTag: string | undefined;
  /** Set once its consumer was cancelled (stop), so that it is cancelled only once. */
  cancelled?: boolean;
  alive: boolean;
  /** Its acks, coalesced. */
  acks: AckTracker;
}

/** What every delivery of one source shares. */
export interface AmqpDeliveryContext {
  topology: AmqpTopology;
  now(): number;
  /** The confirm publisher, or undefined once the source is closed. */
  publisher(): ConfirmPublisher | undefined;
}

/** One RabbitMQ delivery; see createAmqpSource for what each settling call does. */
export class AmqpDelivery implements Delivery {
  readonly id: string;
  readonly body: Uint8Array;
  readonly headers: Headers;
  readonly source: string;
  readonly deliveryCount: number;
  readonly publishedAt: number | undefined;
  readonly #message: ConsumeMessage;
  readonly #session: AmqpSession;
  readonly #context: AmqpDeliveryContext;
  readonly #raw: Record<string, unknown> | undefined;
  readonly #receivedAt: number;
  readonly #ack: AckEntry;
  #settled = false;
  #settling = false;

  constructor(message: ConsumeMessage, session: AmqpSession, context: AmqpDeliveryContext) {
    const raw = message.properties.headers as Record<string, unknown> | undefined;
    // The publisher's headers as amqplib decoded them are needed only to publish a copy.
    this.#raw = raw;
    const hops = headerInt(raw?.[HOP_DELIVERIES]) ?? 0;
    const brokerCount = headerInt(raw?.['x-delivery-count']);
    // x-delivery-count (quorum queues) counts earlier deliveries of this copy; on a classic
    // queue only the redelivered flag is known, so a crash-redelivery counts once.
    this.deliveryCount = hops + (brokerCount ?? (message.fields.redelivered ? 1 : 0)) + 1;
    this.publishedAt =
      headerInt(raw?.[HOP_PUBLISHED_AT]) ?? timestampMs(message.properties.timestamp);
    const messageId = message.properties.messageId;
    this.id = typeof messageId === 'string' && messageId !== '' ? messageId : randomUUID();
    this.body = message.content;
    this.headers = publisherStringHeaders(raw);
    this.source = context.topology.queue;
    this.#message = message;
    this.#session = session;
    this.#context = context;
    this.#receivedAt = context.now();
    this.#ack = session.acks.track(message, this.id);
  }

  ack(): Promise<void> {
    // Checked now (a dead channel rejects at once), sent with the next burst of acks.
    return this.#settle('ack', async () => {
      this.#session.acks.want(this.#ack);
    });
  }

  retryLater(delayMs: number): Promise<void> {
    return this.#settle('retryLater', async () => {
      const tier = pickDelayTier(this.#context.topology.tiers, delayMs);
      const hops = {
        [HOP_DELIVERIES]: String(this.deliveryCount),
        [HOP_PUBLISHED_AT]: String(this.publishedAt ?? this.#receivedAt),
      };
      // Fitted too: a copy refused for its headers at every retry would be given back at once
      // each time, and on a classic queue its delivery count would never grow.
      await this.#publishCopy(tier.queue, hops, fitted(this.#raw, hops));
      this.#ackOriginal('retryLater');
    });
  }

  quarantine(history: QuarantineHistory): Promise<void> {
    return this.#settle('quarantine', async () => {
      const ours = encodeHistory(history, { prefix: AMQP_PREFIX });
      await this.#publishCopy(
        this.#context.topology.deadLetterQueue,
        ours,
        fitted(this.#raw, ours),
      );
      this.#ackOriginal('quarantine');
    });
  }

  release(): Promise<void> {
    return this.#settle('release', async () => {
      try {
        this.#session.channel.nack(this.#message, false, true);
        this.#session.acks.done(this.#ack);
      } catch (error) {
        throw new AmqpChannelLostError(
          `could not give back ${this.id}: its channel closed; RabbitMQ redelivers it`,
          error,
        );
      }
    });
  }

  async #settle(what: string, work: () => Promise<void>): Promise<void> {
    if (this.#settled || this.#settling) {
      throw new InvalidArgumentError(
        `delivery ${this.id} is already settled; ${what} is not allowed`,
      );
    }
    if (!this.#session.alive) {
      throw new AmqpChannelLostError(
        `cannot ${what} delivery ${this.id}: its channel closed; RabbitMQ redelivers the message`,
      );
    }
    this.#settling = true;
    try {
      await work();
      this.#settled = true;
    } finally {
      this.#settling = false;
    }
  }

  /**
   * A copy: same payload, properties and publisher's headers, plus `extra`; confirmed.
   * `headers`: the whole table when it was fitted already.
   */
  async #publishCopy(
    queue: string,
    extra: Record<string, string>,
    headers: Record<string, unknown> = { ...originalRawHeaders(this.#raw), ...extra },
  ): Promise<void> {
    const publisher = this.#context.publisher();
    if (!publisher) throw new AmqpChannelLostError('the AMQP source is closed');
    await publisher.publish(queue, this.#message.content, {
      ...publishProperties(this.#message, this.id),
      headers,
    });
  }

  #ackOriginal(what: string): void {
    if (!this.#session.alive) {
      throw new AmqpChannelLostError(
        `could not ${what} ${this.id}: its channel closed; RabbitMQ redelivers it (and idempotency absorbs a duplicate)`,
      );
    }
    try {
      this.#session.channel.ack(this.#message);
      this.#session.acks.done(this.#ack);
    } catch (error) {
      throw new AmqpChannelLostError(
        `could not ${what} ${this.id}: its channel closed; RabbitMQ redelivers it (and idempotency absorbs a duplicate)`,
        error,
      );
    }
  }
}

/** The header that names the publisher's headers a quarantine copy had to leave out. */
export const HEADERS_DROPPED = `${AMQP_PREFIX}headers-dropped`;

/**
 * The header table of a copy (a retry or a quarantine), made to fit what amqplib can publish:
 * the publisher's headers and ours (the hop count, or the history). A copy that would not fit
 * (a quarantine's error message alone may be 2,000 characters) would be refused at every
 * try, and the message would go round for ever without reaching the dead-letter queue. So the
 * error message is cut first; then, if the publisher's own headers are too large (another
 * client may publish up to RabbitMQ's frame size, or a table amqplib cannot encode as it
 * came), the largest of them are left out, one at a time, and named in
 * {@link HEADERS_DROPPED}: the body, our headers and every other header still go on.
 */
function fitted(
  raw: Record<string, unknown> | undefined,
  ours: Record<string, string>,
): Record<string, unknown> {
  const original = originalRawHeaders(raw);
  const whole = { ...original, ...ours };
  const size = headerTableBytes(whole);
  if (size <= MAX_HEADER_TABLE_BYTES) return whole;
  const history = { ...ours };
  const messageName = `${AMQP_PREFIX}error-message`;
  const message = history[messageName] ?? '';
  const over = size - MAX_HEADER_TABLE_BYTES;
  if (over < Buffer.byteLength(message)) {
    // Cut by characters, a little more than the bytes over: a character is 1 to 4 bytes.
    let keep = Math.max(0, message.length - over - 1);
    for (;;) {
      history[messageName] = `${headOf(message, keep)}…`;
      if (headerTableBytes({ ...original, ...history }) <= MAX_HEADER_TABLE_BYTES) {
        return { ...original, ...history };
      }
      if (keep === 0) break;
      keep = Math.max(0, keep - Math.max(16, Math.ceil(keep / 8)));
    }
  }
  if (messageName in history) history[messageName] = '…';
  const kept = { ...original };
  const dropped: string[] = [];
  const sizes = new Map(
    Object.keys(kept).map((name) => [name, headerTableBytes({ [name]: kept[name] })]),
  );
  // Largest first; those that cannot be measured (Infinity) before all others.
  const bySize = [...sizes.keys()].sort((a, b) => {
    const [x, y] = [sizes.get(a) as number, sizes.get(b) as number];
    return x === y ? 0 : x < y ? 1 : -1;
  });
  for (const name of bySize) {
    const table: Record<string, unknown> = {
      ...kept,
      ...history,
      [HEADERS_DROPPED]: [...dropped, name].join(','),
    };
    delete table[name];
    dropped.push(name);
    delete kept[name];
    if (headerTableBytes(table) <= MAX_HEADER_TABLE_BYTES) return table;
  }
  return { ...history, [HEADERS_DROPPED]: dropped.join(',') };
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
