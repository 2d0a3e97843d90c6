import type { QuarantineHistory } from './types.js';

/** Why a delivery was sent back for later. */
export type RetryReason =
  /** The handler failed with a retryable error and attempts are left. */
  | 'failure'
  /** The same operation is running elsewhere: back after its lease hint. */
  | 'in_progress'
  /** The idempotency store did not answer: the handler was not run unguarded. */
  | 'store_unavailable'
  /** The dead-letter destination refused it: back later, to be quarantined then. */
  | 'quarantine_failed';

/** A settling call the runtime makes on a delivery. */
export type SettleAction = 'ack' | 'retryLater' | 'quarantine' | 'release' | 'touch';

/** What the consumer runtime reports through `onEvent`. */
export type ConsumerEvent =
  | {
      type: 'acked';
      id: string;
      source: string;
      /** The caller's idempotency key. */
      key: string;
      /** True when the operation had completed before: its result was replayed. */
      replayed: boolean;
    }
  | {
      type: 'retry_scheduled';
      id: string;
      source: string;
      key: string | undefined;
      /** Attempts so far, this one included. */
      attempt: number;
      delayMs: number;
      reason: RetryReason;
      error: unknown;
    }
  | { type: 'quarantined'; id: string; source: string; history: QuarantineHistory; error: unknown }
  | {
      /** The broker refused a settling call; the message stays with the broker. */
      type: 'settle_failed';
      id: string;
      source: string;
      action: SettleAction;
      error: unknown;
    }
  | {
      /** Given back unsettled at shutdown (`started`: its handler had begun). */
      type: 'released';
      id: string;
      source: string;
      started: boolean;
    };

/** Receives {@link ConsumerEvent}s; an exception it throws is ignored. */
export type ConsumerEventListener = (event: ConsumerEvent) => void;
