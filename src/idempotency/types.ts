import type { Clock } from '../clock.js';
import type { Duration } from '../duration.js';
import type { Classifier } from '../retry/types.js';
import type { IdempotencyStore } from './store.js';

/** Turns results into the strings a store keeps, and back. */
export interface Codec {
  /** Throws when the value cannot be stored faithfully (circular, a function...). */
  encode(value: unknown): string;
  decode(text: string): unknown;
}

/** Where the operation identity comes from: a field path such as `requestId` or `body.id`, or a function. */
export type KeySource<I> = string | ((input: I) => string | undefined);

/**
 * Which part of the input must match on a repeat: the whole input (default), a field path,
 * several field paths, a selector, or `false` to skip the check.
 */
export type FingerprintSource<I> = false | string | readonly string[] | ((input: I) => unknown);

/** The operation name and, for multi-tenant use, the principal: the same key from two tenants is two operations. */
export interface ScopeOptions<I> {
  operation: string;
  principal?: string | ((input: I) => string | undefined);
}

export type DuplicatePolicy = 'return_previous_result' | 'reject';
export type InProgressPolicy = 'reject' | { wait: Duration; poll?: Duration };

/** Options shared by every front of the idempotency state machine. */
export interface IdempotencyBaseOptions {
  store: IdempotencyStore;
  /** How long a completed or failed record is kept (default 24h). */
  ttl?: Duration;
  /** How long an in-progress claim lives without heartbeat (default 30s). */
  lease?: Duration;
  /** Renew the lease while `fn` runs: true (every lease/3, the default), false, or an interval. */
  heartbeat?: boolean | Duration;
  onDuplicate?: DuplicatePolicy;
  onInProgress?: InProgressPolicy;
  /**
   * Which failures are stored and replayed. Default: errors the retry classifier calls
   * non-retryable. Retryable failures always release the lease (steps kept).
   */
  rememberFailures?: boolean | ((error: unknown) => boolean);
  /**
   * Extra classification of failures, consulted before the default classifier (as
   * `RetryOptions.classify`): decides which failures release (retryable) and which may be
   * remembered. Pass the same classifier your retry policy uses.
   */
  classify?: Classifier;
  codec?: Codec;
  /** Bound on an encoded result, and on each step's encoded result (default 256 KiB). */
  maxResultBytes?: number;
  /**
   * Bound on the stored steps of one operation, across its attempts (default 1000). A step
   * past it throws `ResultNotStorableError` (code `RESULT_TOO_LARGE`) before its work runs.
   */
  maxSteps?: number;
  /**
   * Bound on the encoded results of all steps of one operation together, in UTF-8 bytes
   * (default 16 × `maxResultBytes`: 4 MiB). A step whose result would pass it has run, so
   * the operation is recorded as failed with `RESULT_TOO_LARGE`, as for a result too large.
   */
  maxStepsBytes?: number;
  clock?: Clock;
}

export interface IdempotencyOptions<I> extends IdempotencyBaseOptions {
  key: KeySource<I>;
  scope: string | ScopeOptions<I>;
  fingerprint?: FingerprintSource<I>;
  /** Require a key (default true). When false, a missing key runs `fn` unguarded, visibly. */
  required?: boolean;
}

/** A resolved operation identity, for fronts (HTTP, consumers) that compute it themselves. */
export interface OperationIdentity {
  operation: string;
  principal?: string;
  /** The caller's key, validated: 1..255 characters, no control characters. */
  key: string;
  /** The selected input to fingerprint; `undefined` skips the check. */
  fingerprintOf?: unknown;
}

export interface ExecuteOptions<O> extends IdempotencyBaseOptions {
  /** Return false to release instead of storing this value (e.g. an HTTP 5xx): a retry runs again. */
  shouldStore?: (value: O) => boolean;
}

/** Given to `fn`: steps, derived keys, and a signal that fires when the lease is lost. */
export interface IdempotencyContext {
  /** The hashed, scoped key of this operation. */
  readonly key: string;
  /** Fencing token of this acquisition. */
  readonly token: number;
  /** Acquisitions of this operation including this one. */
  readonly attempt: number;
  /** True when this run took over or resumed an earlier one (some steps may be stored). */
  readonly resumed: boolean;
  /** Aborts when the lease is lost: stop, whatever you write next will be refused. */
  readonly signal: AbortSignal;
  /** Runs `work` at most once per operation; a retry returns the stored result. */
  step<T>(name: string, work: () => T | Promise<T>): Promise<T>;
  /** A stable key derived from the operation and `name`, for a downstream API's own idempotency key. */
  keyFor(name: string): string;
}

/** What happened: a fresh run or a replay of the first outcome. */
export interface Outcome<O> {
  value: O;
  replayed: boolean;
  /** Hashed key of the operation. */
  key: string;
  /** Token of the acquisition that ran `fn` (fresh runs only). */
  token?: number;
  /** True when `fn` ran without a key and so without protection (`required: false`); `key` is then ''. */
  unguarded?: boolean;
}

export interface IdempotentFunction<I, O> {
  (input: I): Promise<O>;
  /** Like the call, but tells a fresh run from a replay. */
  run(input: I): Promise<Outcome<O>>;
}
