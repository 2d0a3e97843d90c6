/**
 * The port between the consumer runtime and a broker. An adapter (in-memory, RabbitMQ,
 * NATS JetStream, SQS) turns broker deliveries into {@link Delivery} objects; the runtime
 * decides, and calls exactly one settling method on each: `ack`, `retryLater` or
 * `quarantine`. An adapter never settles a delivery by itself, except that a delivery the
 * runtime never settled (the process died) comes back through the broker's own redelivery.
 */

/** Headers as the broker carries them; values are strings. */
export type Headers = Record<string, string>;

/** A message as published: payload and headers, untouched by reprocess. */
export interface OutgoingMessage {
  body: Uint8Array;
  headers?: Headers;
  /** Broker message id to deduplicate publications where the broker supports it. */
  id?: string;
}

/** The history attached to a quarantined message. */
export interface QuarantineHistory {
  /** Deliveries of this message so far, including the last. */
  attempts: number;
  /** Epoch ms of the first and of the last failure. */
  firstFailureAt: number;
  lastFailureAt: number;
  lastError: { name: string; code?: string; message: string };
  /** Why it left the hot path. */
  reason: 'non_retryable' | 'attempts_exhausted' | 'max_age' | 'poison' | 'key_missing';
  /** The queue, subject or stream it came from (redrive sends it back there). */
  source: string;
  /** The caller's idempotency key, when one was found. */
  idempotencyKey?: string;
  quarantinedAt: number;
}

/** One delivery of one message. */
export interface Delivery {
  /** Broker message id (stable across redeliveries where the broker has one). */
  readonly id: string;
  readonly body: Uint8Array;
  readonly headers: Headers;
  /** The queue, subject or stream it came from. */
  readonly source: string;
  /**
   * What scopes the message's idempotency key when the consumer names no `operation`: a name
   * that tells this source apart from every other that may share the store (SQS: the queue's
   * ARN, since queues of one name live in many accounts and regions). Default `source`.
   */
  readonly scope?: string;
  /** The broker's own count, 1 on the first delivery; undefined when the broker has none. */
  readonly deliveryCount: number | undefined;
  /** Epoch ms the message was first published, when known (for a maximum message age). */
  readonly publishedAt: number | undefined;

  /** Done: remove it from the queue. */
  ack(): Promise<void>;
  /** Deliver it again after `delayMs`, with the broker's own delay mechanism. */
  retryLater(delayMs: number): Promise<void>;
  /**
   * Publish it, payload and headers untouched plus the history, to the dead-letter
   * destination (confirmed), then remove it from the source. Never drops it: when the
   * dead-letter publish fails this rejects and the message stays unacked.
   */
  quarantine(history: QuarantineHistory): Promise<void>;
  /** Tell the broker the handler is still working (extends the ack deadline), where supported. */
  touch?(): Promise<void>;
  /**
   * Give it back unsettled for prompt redelivery, without a delay and without a decision
   * (AMQP `nack` with requeue, JetStream `nak()`, SQS visibility 0). The runtime calls it at
   * shutdown for deliveries that did not start or did not finish in time. Optional: without
   * it, an unsettled delivery comes back when the connection closes or its ack deadline passes.
   */
  release?(): Promise<void>;
}

/** A broker source the runtime pulls from. */
export interface MessageSource {
  readonly name: string;
  /**
   * Starts delivering to `onDelivery`, at most `prefetch` unsettled at once (backpressure:
   * the next delivery waits until one settles). Resolves once consuming has started.
   */
  start(
    onDelivery: (delivery: Delivery) => Promise<void>,
    options: { prefetch: number },
  ): Promise<void>;
  /** Stops taking new deliveries; unsettled ones stay with the broker for redelivery. */
  stop(): Promise<void>;
  /** Closes connections the adapter opened itself. */
  close(): Promise<void>;
}

/** A quarantined message as listed for operators and redrive. */
export interface QuarantinedMessage {
  /** Id in the dead-letter destination. */
  id: string;
  body: Uint8Array;
  /** Original headers, without the history. */
  headers: Headers;
  history: QuarantineHistory;
}

export interface QuarantineFilter {
  errorCode?: string;
  /** Only messages quarantined at least this long ago (ms). */
  olderThanMs?: number;
  idempotencyKey?: string;
  limit?: number;
}

/** The dead-letter destination of a broker: list, inspect and move back. */
export interface DeadLetterQueue {
  list(filter?: QuarantineFilter): Promise<QuarantinedMessage[]>;
  /**
   * Moves matching messages back to their source (payload, headers and idempotency key
   * unchanged), at most `ratePerSecond`; returns how many moved. A message is removed from
   * the dead-letter destination only after its republish was confirmed.
   */
  redrive(filter?: QuarantineFilter & { ratePerSecond?: number }): Promise<number>;
}
