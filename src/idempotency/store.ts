import type { Clock } from '../clock.js';
/**
 * The storage port of idempotency. A store does atomic storage and nothing else: hashing,
 * canonical JSON, encoding of results and the state machine live in the core. Every method
 * is one atomic transition; expected outcomes (a lost lease, an existing record) are data,
 * not exceptions. A store throws only when it cannot answer (the core turns that into
 * `StoreUnavailableError`) or when a stored record cannot be read back (`RecordCorruptError`).
 *
 * Timeline of one key (t = store clock):
 *
 *   begin ──acquired(token 7)──► in_progress, leaseUntil = t + lease
 *      │  heartbeat(7) ─► leaseUntil moves on      saveStep(7, 'charge') ─► steps.charge
 *      │  ... lease ends without heartbeat ...
 *   begin (other worker) ──acquired(token 8, steps kept)──► in_progress
 *      │  complete(7) ─► lease_lost (nothing written)     complete(8) ─► completed
 *   begin (repeat) ──existing(completed)──► replay
 *      │  ... expiresAt passes ...
 *   begin ──acquired(token 9, steps empty)──► a new operation
 */

export type RecordStatus = 'in_progress' | 'completed' | 'failed';

/** One stored operation. Times are epoch milliseconds on the store's clock. */
export interface IdempotencyRecord {
  /** SHA-256 (hex) of the scoped key: fixed length, no personal data. */
  key: string;
  /** SHA-256 (hex) of the canonical selected input; '' when fingerprinting is off. */
  fingerprint: string;
  status: RecordStatus;
  /** Fencing token of the latest acquisition. Grows at every acquisition, never reused. */
  token: number;
  /** Acquisitions of this operation so far (1 on the first; a takeover or a retry after release adds 1). */
  attempts: number;
  /** End of the current lease (in_progress only; 0 once released). */
  leaseUntil: number;
  /** After this the record is dead: the next begin starts a new operation. */
  expiresAt: number;
  /** Encoded result (codec output) when completed. */
  result?: string;
  /** Encoded error when failed. */
  error?: string;
  /** Encoded results of completed steps, by step name. */
  steps: Record<string, string>;
  createdAt: number;
  updatedAt: number;
}

export type BeginResult =
  | {
      kind: 'acquired';
      token: number;
      leaseUntil: number;
      /** Acquisitions of this operation including this one (1 for a new operation). */
      attempts: number;
      /** Steps kept from an earlier holder of the same operation (empty for a new one). */
      steps: Record<string, string>;
      /** True when a live record's ended lease was taken over (the same operation resumes). */
      takeover: boolean;
    }
  | {
      /** Not acquired: the live record as it is (its fingerprint may differ from the caller's). */
      kind: 'existing';
      record: IdempotencyRecord;
    };

export type FencedResult = { kind: 'ok' } | { kind: 'lease_lost' };
export type HeartbeatResult = { kind: 'ok'; leaseUntil: number } | { kind: 'lease_lost' };

export interface ListOptions {
  status?: RecordStatus;
  /** At most this many records (stores may cap it). */
  limit?: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
}

export interface ListPage {
  records: IdempotencyRecord[];
  cursor?: string;
}

export interface IdempotencyStore {
  /** Short name for messages and telemetry, e.g. `sqlite`, `postgres`. */
  readonly name: string;

  /**
   * The clock this store decides leases on, when it is a clock of this process (the memory
   * and SQLite stores: `now()`, the wall clock). A worker then also takes its lease as lost
   * once that clock passes the lease's end, as the store would: a forward step of the wall
   * clock lets another worker take the operation over, even though the lease has not run out
   * on the worker's monotonic clock. Absent for stores that decide on a server's clock.
   */
  readonly leaseClock?: Clock;

  /**
   * Acquires `key` when there is no record, the record has expired, or it is `in_progress`
   * with its lease ended AND the same fingerprint. Acquiring sets `in_progress`, a new lease,
   * and a token greater than every token ever issued for the key (derived from the store's
   * clock, so it stays greater even after the record was removed). A takeover keeps `steps`;
   * an expired record starts afresh. Otherwise returns the existing record, in the same
   * atomic step.
   */
  begin(key: string, fingerprint: string, leaseMs: number, ttlMs: number): Promise<BeginResult>;

  /** Stores the result and ends the operation, only if the token is still current. */
  complete(key: string, token: number, result: string, ttlMs: number): Promise<FencedResult>;

  /** Stores a remembered (non-retryable) failure, only if the token is still current. */
  fail(key: string, token: number, error: string, ttlMs: number): Promise<FencedResult>;

  /**
   * Ends the lease at once and keeps `steps`, only if the token is still current. With
   * `ttlMs`, the record is also kept at least `ttlMs` from now (expiresAt = max(expiresAt,
   * now + ttlMs)), so an operation waiting for its retry keeps its steps for a whole TTL after
   * its latest attempt, not only after its first (a late retry would otherwise start afresh
   * and run a completed step's effect again). The core always passes it.
   */
  release(key: string, token: number, ttlMs?: number): Promise<FencedResult>;

  /** Extends the lease to now + leaseMs, only if the token is still current and in progress. */
  heartbeat(key: string, token: number, leaseMs: number): Promise<HeartbeatResult>;

  /** Records one completed step, only if the token is still current and in progress. */
  saveStep(key: string, token: number, name: string, result: string): Promise<FencedResult>;

  /** The record, expired or not; undefined when there is none. */
  get(key: string): Promise<IdempotencyRecord | undefined>;

  /** Removes the record; true when there was one. */
  delete(key: string): Promise<boolean>;

  list(options?: ListOptions): Promise<ListPage>;

  /** Removes expired records; returns how many. */
  purgeExpired(options?: { limit?: number }): Promise<number>;

  /** Releases the store's own resources (not a client the user passed in). */
  close?(): Promise<void>;
}
