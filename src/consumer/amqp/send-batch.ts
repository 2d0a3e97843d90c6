/**
 * Sends small fire-and-forget protocol frames (acks) in bursts. Sent one by one as handlers
 * finish, each ack becomes its own socket write; collected until the event loop turns, they
 * are written together (the socket coalesces a synchronous burst into one write). Neither
 * protocol confirms an ack, so the caller is not kept waiting for the burst either: an ack
 * that cannot be sent at flush time (the connection died meanwhile) is reported to `onError`,
 * and the broker redelivers the message, exactly as for an ack lost on the wire.
 * Broker-neutral: the RabbitMQ and JetStream sources both use it.
 */
export class SendBatch {
  #pending: Array<() => void> = [];
  #scheduled = false;
  readonly #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  /** Runs `send` at the next turn of the event loop, with the others queued meanwhile. */
  add(send: () => void): void {
    this.#pending.push(send);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    for (const send of batch) {
      try {
        send();
      } catch (error) {
        this.#onError(error);
      }
    }
  }
}
