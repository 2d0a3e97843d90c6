import type { Channel, ConsumeMessage } from 'amqplib';
import { AmqpChannelLostError } from './amqp-errors.js';

/** Unsettled at the broker, its outcome not decided yet. */
const OUTSTANDING = 0;
/** Finished: an ack is due and not sent yet. */
const WANTED = 1;
/** Settled at the broker (acked, or given back by a nack), or sure to be. */
const DONE = 2;

/** One delivery of a channel, as the ack tracker sees it. */
export interface AckEntry {
  readonly message: ConsumeMessage;
  readonly id: string;
  state: number;
}

/**
 * The acks of one channel, sent in bursts and coalesced. amqplib writes every frame to the
 * socket on its own, so one ack per message costs a write system call per message; instead,
 * acks asked for are collected until the event loop turns, and then:
 *
 * - the longest run of finished deliveries from the oldest unsettled one on (every delivery of
 *   the channel with a lower tag is settled or finished too) is acked with one `basic.ack`
 *   `multiple` on the newest wanted tag of the run;
 * - finished deliveries past the first unfinished one are acked one by one, at once (never
 *   held back, so a slow handler neither blocks nor delays the others, nor their prefetch).
 *
 * A `multiple` ack covers every unacked tag of the channel up to the one named, so it is sent
 * only when each of them is known here and finished: every delivery of the channel is
 * `track`ed in tag order (RabbitMQ numbers a channel's deliveries upward), also those given
 * straight back, and only an entry whose ack was asked for (`want`) or whose settling call
 * went through (`done`) counts as finished. A message that did not finish is never acked.
 * Neither protocol confirms an ack: an ack that cannot be sent at flush time (the channel
 * died meanwhile) is reported to `onError`, and the broker redelivers the message, as for
 * an ack lost on the wire.
 */
export class AckTracker {
  /** Entries not known to be settled, in tag order, from `#head` on (settled ones may linger). */
  #entries: AckEntry[] = [];
  #head = 0;
  /** Entries that are not DONE. */
  #live = 0;
  #wanted: AckEntry[] = [];
  #scheduled = false;
  #lastTag = 0;
  /** Off once tags were seen out of order: then every ack goes alone. */
  #coalesce = true;
  readonly #channel: Channel;
  readonly #alive: () => boolean;
  readonly #onError: (error: unknown) => void;

  constructor(channel: Channel, alive: () => boolean, onError: (error: unknown) => void) {
    this.#channel = channel;
    this.#alive = alive;
    this.#onError = onError;
  }

  /** Registers a delivery of the channel; call it for every one, in the order they arrive. */
  track(message: ConsumeMessage, id: string): AckEntry {
    const tag = message.fields.deliveryTag;
    if (!(tag > this.#lastTag)) this.#coalesce = false;
    this.#lastTag = tag;
    const entry: AckEntry = { message, id, state: OUTSTANDING };
    // Settled entries past an unfinished one stay until it finishes; drop them now and then
    // so that a handler that never finishes cannot make the list grow without bound.
    if (this.#entries.length - this.#head > 2 * this.#live + 64) this.#compact();
    this.#entries.push(entry);
    this.#live += 1;
    return entry;
  }

  /** The delivery finished: ack it with the next burst. */
  want(entry: AckEntry): void {
    if (entry.state !== OUTSTANDING) return;
    entry.state = WANTED;
    this.#wanted.push(entry);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** The delivery was settled by a call of its own (an ack or nack sent): it is no gap. */
  done(entry: AckEntry): void {
    if (entry.state === DONE) return;
    if (entry.state === WANTED) return; // its ack goes with the burst
    entry.state = DONE;
    this.#live -= 1;
  }

  /** Deliveries of the channel not settled yet (an ack waiting for its burst counts). */
  get unsettled(): number {
    return this.#live;
  }

  /** Sends the acks waiting for the next burst now (before the channel closes). */
  flushNow(): void {
    if (this.#scheduled) this.#flush();
  }

  #flush(): void {
    this.#scheduled = false;
    const wanted = this.#wanted;
    if (wanted.length === 0) return;
    this.#wanted = [];
    const channel = this.#channel;
    if (!this.#alive()) {
      for (const entry of wanted) this.#lost(entry);
      return;
    }
    if (this.#coalesce) {
      // The run of finished entries from the oldest one on.
      const entries = this.#entries;
      let head = this.#head;
      let last: AckEntry | undefined;
      while (head < entries.length) {
        const entry = entries[head] as AckEntry;
        if (entry.state === OUTSTANDING) break;
        if (entry.state === WANTED) last = entry;
        head += 1;
      }
      if (last !== undefined) {
        try {
          channel.ack(last.message, true);
        } catch (error) {
          // The channel is gone: nothing of this burst can be acked any more.
          for (const entry of wanted) this.#lost(entry, error);
          return;
        }
        for (let i = this.#head; i < head; i++) {
          const entry = entries[i] as AckEntry;
          if (entry.state === WANTED) {
            entry.state = DONE;
            this.#live -= 1;
          }
        }
      }
      this.#head = head;
      if (head === entries.length) {
        this.#entries = [];
        this.#head = 0;
      }
    }
    // Finished past an unfinished one: each alone, now.
    for (const entry of wanted) {
      if (entry.state !== WANTED) continue;
      try {
        channel.ack(entry.message);
        entry.state = DONE;
        this.#live -= 1;
      } catch (error) {
        this.#lost(entry, error);
      }
    }
  }

  #lost(entry: AckEntry, error?: unknown): void {
    // Not sent: the broker keeps it unacked and redelivers it; it stays a gap here.
    entry.state = OUTSTANDING;
    this.#onError(
      new AmqpChannelLostError(
        `could not ack ${entry.id}: its channel closed; RabbitMQ redelivers it (and idempotency absorbs a duplicate)`,
        error,
      ),
    );
  }

  #compact(): void {
    const kept: AckEntry[] = [];
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i] as AckEntry;
      if (entry.state !== DONE) kept.push(entry);
    }
    this.#entries = kept;
    this.#head = 0;
  }
}
