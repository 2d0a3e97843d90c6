import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
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
  /** The server's `max_payload` (headers and body of one message), when connected. */
  maxPayload(): number | undefined;
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
      const msgID = `rp-q:${topology.stream}:${message.seq}`;
      const headers = this.#fitted(history, msgID);
      try {
        await client.publish(`${topology.deadLetterSubject}.${message.subject}`, message.data, {
          headers,
          msgID,
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

  /**
   * The copy's headers: the publisher's, untouched, and the history. A body that fit the
   * server's `max_payload` when it was published may not fit with the history added (its
   * error message alone may be 2,000 characters): the error message is then cut to what
   * fits. When even that is too much, nothing can make the copy fit, and the message stays
   * where it is, reported with a {@link JetStreamSettleError} that says so at each try.
   */
  #fitted(history: QuarantineHistory, msgID: string): MsgHdrs {
    const message = this.#message;
    const ours: Headers = {
      ...encodeHistory(history, NATS_HISTORY_CODEC),
      [MESSAGE_ID]: this.id,
      [SUBJECT]: message.subject,
    };
    const headers = carryHeaders(message.headers, ours);
    const limit = this.#context.maxPayload();
    if (limit === undefined) return headers;
    const over = headerBytes(headers, msgID) + message.data.byteLength - limit;
    if (over <= 0) return headers;
    // The error message is the one part of the history that may be cut: it is escaped as it
    // goes in a header, so it is cut before escaping, a character at a time.
    const messageName = `${NATS_HISTORY_CODEC.prefix}error-message`;
    const escapeText = NATS_HISTORY_CODEC.escape ?? ((text: string) => text);
    const allowed = (ours[messageName] ?? '').length - over - escapeText(ELLIPSIS).length;
    if (allowed >= 0) {
      ours[messageName] = escapeText(
        `${clipEscaped(history.lastError.message, allowed, escapeText)}${ELLIPSIS}`,
      );
      const clipped = carryHeaders(message.headers, ours);
      if (headerBytes(clipped, msgID) + message.data.byteLength <= limit) return clipped;
    }
    throw new JetStreamSettleError(
      `${this.id} cannot be quarantined: its body (${message.data.byteLength} bytes) with its headers and the quarantine history does not fit the server's max_payload (${limit} bytes); it stays in ${this.#context.topology.stream}, unacked`,
    );
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

const utf8 = new TextEncoder();

/**
 * Bytes of a message's header block as NATS sends it: `NATS/1.0\r\n`, a `name: value\r\n`
 * line per value (and one for the `Nats-Msg-Id` the publish adds), then `\r\n`.
 */
function headerBytes(headers: MsgHdrs, msgID: string): number {
  let bytes = 'NATS/1.0\r\n\r\n'.length + utf8.encode(`${NATS_MSG_ID}: ${msgID}\r\n`).byteLength;
  for (const name of headers.keys()) {
    for (const value of headers.values(name)) {
      bytes += utf8.encode(`${name}: ${value}\r\n`).byteLength;
    }
  }
  return bytes;
}

const ELLIPSIS = '…';

/** The longest start of `text` whose escaped form takes at most `length` characters. */
function clipEscaped(text: string, length: number, escapeText: (text: string) => string): string {
  let used = 0;
  let end = 0;
  for (const char of text) {
    used += escapeText(char).length;
    if (used > length) break;
    end += char.length;
  }
  return text.slice(0, end);
}
