import { type Clock, sleep, systemClock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import { checkQuarantineFilter, matchesFilter } from './quarantine-filter.js';
import type {
  DeadLetterQueue,
  Headers,
  OutgoingMessage,
  QuarantineFilter,
  QuarantineHistory,
  QuarantinedMessage,
} from './types.js';

/** A quarantined message in memory: the listing plus the broker id it had in its source. */
export interface MemoryQuarantinedMessage extends QuarantinedMessage {
  /** The message id in its source; a redrive republishes under the same id. */
  messageId: string;
}

/** Puts a message back on a named source (how a redrive reaches it). */
export type Republish = (message: OutgoingMessage & { id: string }) => void;

/**
 * An in-memory dead-letter destination. Sources attach themselves by name; a redrive sends
 * each message back to the source named in its history.
 */
export interface MemoryDeadLetterQueue extends DeadLetterQueue {
  /** Stores a message with its history; returns its id in the dead-letter queue. */
  add(message: {
    messageId: string;
    body: Uint8Array;
    headers: Headers;
    history: QuarantineHistory;
  }): MemoryQuarantinedMessage;
  /** Routes redrives of messages from `source` to `republish`; returns a detach function. */
  attach(source: string, republish: Republish): () => void;
  /** The message with this dead-letter id, if it is still here. */
  get(id: string): MemoryQuarantinedMessage | undefined;
  /** Removes one message (an operator's discard); true when it was here. */
  remove(id: string): boolean;
  /** Number of messages held. */
  readonly size: number;
  list(filter?: QuarantineFilter): Promise<MemoryQuarantinedMessage[]>;
}

export interface MemoryDeadLetterQueueOptions {
  /** Clock for quarantine ages and the redrive rate limit (default: the system clock). */
  clock?: Clock;
}

/**
 * Creates an in-memory {@link DeadLetterQueue}. Listing filters by error code, age and key;
 * `redrive` moves matches back at most `ratePerSecond` (spaced on the injected clock),
 * removing each only after it was republished.
 */
export function createMemoryDeadLetterQueue(
  options: MemoryDeadLetterQueueOptions = {},
): MemoryDeadLetterQueue {
  const clock = options.clock ?? systemClock;
  const messages = new Map<string, MemoryQuarantinedMessage>();
  const routes = new Map<string, Republish>();
  let seq = 0;

  function select(filter: QuarantineFilter | undefined): MemoryQuarantinedMessage[] {
    const now = clock.now();
    const out: MemoryQuarantinedMessage[] = [];
    for (const message of messages.values()) {
      if (filter?.limit !== undefined && out.length >= filter.limit) break;
      if (matchesFilter(message.history, filter, now)) out.push(message);
    }
    return out;
  }

  return {
    add(message) {
      seq += 1;
      const stored: MemoryQuarantinedMessage = {
        id: `dlq-${seq}`,
        messageId: message.messageId,
        body: message.body,
        headers: { ...message.headers },
        history: { ...message.history, lastError: { ...message.history.lastError } },
      };
      messages.set(stored.id, stored);
      return stored;
    },

    attach(source, republish) {
      routes.set(source, republish);
      return () => {
        if (routes.get(source) === republish) routes.delete(source);
      };
    },

    get(id) {
      return messages.get(id);
    },

    remove(id) {
      return messages.delete(id);
    },

    get size() {
      return messages.size;
    },

    async list(filter) {
      checkQuarantineFilter(filter);
      return select(filter).map(copyMessage);
    },

    async redrive(filter) {
      const rate = checkQuarantineFilter(filter);
      const chosen = select(filter);
      // Refuse before moving anything, so a bad route never leaves a redrive half done.
      for (const message of chosen) {
        if (!routes.has(message.history.source)) {
          throw new InvalidArgumentError(
            `cannot redrive ${message.id}: no source named ${JSON.stringify(message.history.source)} is attached to this dead-letter queue`,
          );
        }
      }
      const spacing = rate === undefined ? 0 : 1000 / rate;
      let moved = 0;
      for (const message of chosen) {
        if (moved > 0 && spacing > 0) await sleep(clock, spacing);
        // Another redrive or an operator may have taken it while we waited.
        if (!messages.has(message.id)) continue;
        const republish = routes.get(message.history.source);
        if (!republish) continue;
        republish({ id: message.messageId, body: message.body, headers: { ...message.headers } });
        messages.delete(message.id);
        moved += 1;
      }
      return moved;
    },
  };
}

function copyMessage(message: MemoryQuarantinedMessage): MemoryQuarantinedMessage {
  return {
    ...message,
    headers: { ...message.headers },
    history: { ...message.history, lastError: { ...message.history.lastError } },
  };
}
