import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Clock } from '../../clock.js';
import { InvalidArgumentError } from '../../errors.js';
import { encodeHistory } from '../amqp/history-headers.js';
import type { SendBatch } from '../amqp/send-batch.js';
import type { Delivery, Headers, QuarantineHistory } from '../types.js';
import { JetStreamSettleError } from './jetstream-errors.js';
import {
  MESSAGE_ID,
  NATS_HISTORY_CODEC,
  NATS_MSG_ID,
  SUBJECT,
  carryHeaders,
  deliveryHeaders,
} from './jetstream-headers.js';
import type { JetStreamTopology } from './jetstream-topology.js';
import type { Slots } from './slots.js';

/** What every delivery of one source shares. */
export interface DeliveryContext {
  topology: JetStreamTopology;
  clock: Clock;
  /** The JetStream client, or undefined once the source is closed. */
  client(): JetStreamClient | undefined;
  acks: SendBatch;
}

/**
 * One JetStream delivery (see createJetStreamSource for what each settling call does). It
 * holds one of the source's prefetch slots until it settles, or until AckWait passes without
 * a touch: JetStream has then taken the message back (it redelivers it), so it no longer
 * counts against prefetch, and a stuck handler cannot starve the source of its own redelivery.
 */
export class JetStreamDelivery implements Delivery {
  readonly id: string;
  readonly body: Uint8Array;
  readonly headers: Headers;
  readonly source: string;
  readonly deliveryCount: number;
  readonly publishedAt: number;
  readonly #message: JsMsg;
  readonly #slots: Slots;
  readonly #context: DeliveryContext;
  #settled = false;
  #settling = false;
  #slotHeld = true;
  #cancelExpiry: () => void;

  constructor(message: JsMsg, slots: Slots, context: DeliveryContext) {
    const h = message.headers;
    this.id =
      h?.get(MESSAGE_ID) || h?.get(NATS_MSG_ID) || `${context.topology.stream}:${message.seq}`;
    this.body = message.data;
    this.headers = deliveryHeaders(h);
    this.source = context.topology.stream;
    this.deliveryCount = message.info.deliveryCount;
    this.publishedAt = Math.floor(message.info.timestampNanos / 1e6);
    this.#message = message;
    this.#slots = slots;
    this.#context = context;
    this.#cancelExpiry = context.clock.setTimer(context.topology.ackWaitMs, () => this.#freeSlot());
  }

  ack(): Promise<void> {
    // Checked now (a closed connection rejects at once), sent with the next burst of acks.
    return this.#settle('ack', () => {
      if (this.#context.client() === undefined) this.#fail('ack', new Error('connection closed'));
      this.#context.acks.add(() => this.#message.ack());
    });
  }

  retryLater(delayMs: number): Promise<void> {
    return this.#settle('retryLater', () => {
      if (!Number.isFinite(delayMs) || delayMs < 0) {
        throw new InvalidArgumentError(
          `a retry delay must be a finite number >= 0, got ${delayMs}`,
        );
      }
      this.#send('nak', () => this.#message.nak(Math.ceil(delayMs)));
    });
  }

  release(): Promise<void> {
    return this.#settle('release', () => this.#send('nak', () => this.#message.nak()));
  }

  quarantine(history: QuarantineHistory): Promise<void> {
    return this.#settle('quarantine', async () => {
      const { topology } = this.#context;
      const client = this.#context.client();
      if (!client) throw new JetStreamSettleError(`the source of ${topology.stream} is closed`);
      const message = this.#message;
      const headers = carryHeaders(message.headers, {
        ...encodeHistory(history, NATS_HISTORY_CODEC),
        [MESSAGE_ID]: this.id,
        [SUBJECT]: message.subject,
      });
      try {
        await client.publish(`${topology.deadLetterSubject}.${message.subject}`, message.data, {
          headers,
          msgID: `rp-q:${topology.stream}:${message.seq}`,
        });
      } catch (error) {
        throw new JetStreamSettleError(
          `could not publish ${this.id} to the dead-letter stream ${topology.deadLetterStream}; it stays unacked`,
          error,
        );
      }
      this.#send('term', () => message.term());
    });
  }

  async touch(): Promise<void> {
    if (this.#settled) return;
    this.#send('touch', () => this.#message.working());
    if (this.#slotHeld) {
      this.#cancelExpiry();
      this.#cancelExpiry = this.#context.clock.setTimer(this.#context.topology.ackWaitMs, () =>
        this.#freeSlot(),
      );
    }
  }

  async #settle(what: string, work: () => Promise<void> | void): Promise<void> {
    if (this.#settled || this.#settling) {
      throw new InvalidArgumentError(
        `delivery ${this.id} is already settled; ${what} is not allowed`,
      );
    }
    this.#settling = true;
    try {
      await work();
      this.#settled = true;
      this.#freeSlot();
    } finally {
      this.#settling = false;
    }
  }

  #freeSlot(): void {
    if (!this.#slotHeld) return;
    this.#slotHeld = false;
    this.#cancelExpiry();
    this.#slots.release();
  }

  #send(what: string, act: () => void): void {
    try {
      act();
    } catch (error) {
      this.#fail(what, error);
    }
  }

  #fail(what: string, error: unknown): never {
    throw new JetStreamSettleError(
      `could not ${what} delivery ${this.id}; JetStream redelivers it after AckWait`,
      error,
    );
  }
}
