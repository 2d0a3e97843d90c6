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
import { fitHeaders } from './fit-headers.js';
import { encodeHistory } from './history-headers.js';

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
      await this.#publishCopy(tier.queue, hops);
      this.#ackOriginal('retryLater');
    });
  }

  quarantine(history: QuarantineHistory): Promise<void> {
    return this.#settle('quarantine', async () => {
      const ours = encodeHistory(history, { prefix: AMQP_PREFIX });
      await this.#publishCopy(
        this.#context.topology.deadLetterQueue,
        ours,
        `${AMQP_PREFIX}error-message`,
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
   * A copy: same payload and properties, the publisher's headers plus `ours`, fitted to what
   * amqplib can publish (see fitHeaders; `messageName` may be cut); confirmed.
   */
  async #publishCopy(
    queue: string,
    ours: Record<string, string>,
    messageName?: string,
  ): Promise<void> {
    const publisher = this.#context.publisher();
    if (!publisher) throw new AmqpChannelLostError('the AMQP source is closed');
    await publisher.publish(queue, this.#message.content, {
      ...publishProperties(this.#message, this.id),
      headers: fitHeaders(originalRawHeaders(this.#raw), ours, messageName),
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
