import { causeChain } from '../cause-chain.js';
import { elapsedOn, sleep } from '../clock.js';
import {
  DuplicateRequestError,
  IdempotencyInProgressError,
  IdempotencyKeyReuseError,
  InvalidArgumentError,
  LeaseLostError,
} from '../errors.js';
import { type AcquiredRun, createContext, decodeFromStore, encodeForStore } from './context.js';
import { decodeFailure, encodeFailure } from './failure.js';
import { fingerprintOf, hashKey } from './hash.js';
import { validateKey } from './key.js';
import { LeaseKeeper, MAX_TIMER_MS } from './lease-keeper.js';
import { checkOptionNames } from '../option-names.js';
import {
  EXECUTE_OPTIONS,
  type ResolvedOptions,
  resolveOptions,
  shouldRemember,
} from './options.js';
import type { BeginResult } from './store.js';
import {
  callStore,
  checkBegin,
  checkFenced,
  isStoreRefusal,
  storeFailure,
} from './store-results.js';
import type { ExecuteOptions, IdempotencyContext, OperationIdentity, Outcome } from './types.js';

/*
 * The one state machine behind every front (the idempotent() wrapper, the HTTP middleware,
 * the consumers, the Lambda handlers):
 *
 *   begin ─┬─ acquired ──► fn(ctx) ─┬─ value ──► encode ─┬─ complete ─► { value, replayed: false }
 *          │                         │                    └─ not storable / too large ─► fail ─► throw
 *          │                         │   shouldStore(value) false ─► release ─► { value }
 *          │                         ├─ retryable error ─► release (steps kept) ─► rethrow
 *          │                         ├─ other error ─► fail (when remembered) or release ─► rethrow
 *          │                         └─ any error after a step's result was not storable ─► fail ─► rethrow
 *          ├─ existing, other fingerprint ─► IdempotencyKeyReuseError
 *          ├─ existing, completed ─► { stored value, replayed: true } (or DuplicateRequestError)
 *          ├─ existing, failed ─► throw the remembered error (replayed)
 *          └─ existing, in progress ─► IdempotencyInProgressError, or poll begin until the wait bound
 *
 * Every write after begin is fenced by the token: a worker whose lease was taken over writes
 * nothing and gets LeaseLostError. Any store exception becomes StoreUnavailableError; a
 * failed begin means fn never runs (fail closed).
 */

/**
 * Runs `fn` at most once per operation identity (see DESIGN.md, Idempotency), and tells a
 * fresh run from a replay. The entry point for fronts that compute the identity themselves;
 * most code wants {@link idempotent}.
 *
 * @throws IdempotencyKeyMissingError / IdempotencyKeyInvalidError for a bad `identity.key`
 * @throws IdempotencyKeyReuseError when the key was used with another fingerprint
 * @throws IdempotencyInProgressError while another worker holds the operation
 * @throws DuplicateRequestError on a repeat under `onDuplicate: 'reject'`
 * @throws LeaseLostError when this worker's lease was taken over while `fn` ran
 * @throws StoreUnavailableError / RecordCorruptError when the store fails or answers garbage
 * @throws ResultNotStorableError when the result cannot be stored (the failure is recorded)
 * @throws the error `fn` threw, or on a repeat its remembered copy (`ReplayedFailureError`)
 */
export async function executeIdempotent<O>(
  identity: OperationIdentity,
  fn: (ctx: IdempotencyContext) => Promise<O>,
  options: ExecuteOptions<O>,
): Promise<Outcome<O>> {
  let resolved: ResolvedOptions<O>;
  try {
    if (typeof options === 'object' && options !== null) {
      checkOptionNames('executeIdempotent()', options, EXECUTE_OPTIONS);
    }
    resolved = resolveOptions(options);
  } catch (error) {
    return Promise.reject(error);
  }
  return executeResolved(identity, fn, resolved);
}

/** The stored key and fingerprint of an identity, validated. */
export interface ResolvedIdentity {
  key: string;
  fingerprint: string;
}

/** Validates an {@link OperationIdentity} and hashes it into the stored key and fingerprint. */
export function resolveIdentity(identity: OperationIdentity): ResolvedIdentity {
  if (typeof identity !== 'object' || identity === null) {
    throw new InvalidArgumentError('operation identity must be an object { operation, key }');
  }
  const { operation, principal } = identity;
  if (typeof operation !== 'string' || operation.length === 0) {
    throw new InvalidArgumentError(
      `the operation name (scope) must be a non-empty string, got ${JSON.stringify(operation)}`,
    );
  }
  if (principal !== undefined && (typeof principal !== 'string' || principal.length === 0)) {
    throw new InvalidArgumentError(
      `the principal must be a non-empty string when given, got ${JSON.stringify(principal)}`,
    );
  }
  const key = hashKey({ operation, principal, key: validateKey(identity.key) });
  const fingerprint =
    identity.fingerprintOf === undefined ? '' : fingerprintOf(identity.fingerprintOf);
  return { key, fingerprint };
}

/** {@link executeIdempotent} with options already resolved (fronts resolve them once). */
export function executeResolved<O>(
  identity: OperationIdentity,
  fn: (ctx: IdempotencyContext) => Promise<O>,
  options: ResolvedOptions<O>,
): Promise<Outcome<O>> {
  // Not async: a second async frame around executeHashed would cost every operation a few
  // microtask turns. A bad identity still rejects instead of throwing.
  let resolved: ResolvedIdentity;
  try {
    if (typeof fn !== 'function') {
      throw new InvalidArgumentError('the operation to run must be a function (ctx) => Promise');
    }
    resolved = resolveIdentity(identity);
  } catch (error) {
    return Promise.reject(error);
  }
  return executeHashed(resolved, fn, options);
}

/**
 * The state machine itself, for a front that validated and hashed the identity already
 * (idempotent() checks its scope once, at wrap time).
 */
export async function executeHashed<O>(
  { key, fingerprint }: ResolvedIdentity,
  fn: (ctx: IdempotencyContext) => Promise<O> | O,
  options: ResolvedOptions<O>,
): Promise<Outcome<O>> {
  const { store, clock, inProgress } = options;
  // Counted on the monotonic clock, as the lease is: a step of the wall clock neither
  // stretches the wait nor ends it early.
  const waitUntil = inProgress.kind === 'wait' ? elapsedOn(clock) + inProgress.waitMs : 0;

  for (;;) {
    // The store's lease starts at some point after this: counting from here is safe.
    const sentAt = elapsedOn(clock);
    let answer: unknown;
    try {
      answer = await store.begin(key, fingerprint, options.leaseMs, options.ttlMs);
    } catch (error) {
      throw storeFailure(store, 'begin', error);
    }
    const begun = checkBegin(store, answer);
    if (begun.kind === 'acquired') return runAcquired(key, begun, sentAt, fn, options);

    const record = begun.record;
    if (record.fingerprint !== fingerprint) {
      throw new IdempotencyKeyReuseError(
        'this idempotency key was already used with a different payload (fingerprint mismatch)',
      );
    }
    if (record.status === 'completed') {
      if (options.onDuplicate === 'reject') {
        throw new DuplicateRequestError(
          'this operation was already completed (onDuplicate: reject)',
        );
      }
      const value = decodeFromStore(options.codec, record.result as string, 'the stored result');
      return { value: value as O, replayed: true, key };
    }
    if (record.status === 'failed') throw decodeFailure(record.error as string);

    // In progress under a live lease held by someone else.
    const retryAfterMs = Math.min(options.leaseMs, Math.max(1, record.leaseUntil - clock.now()));
    const waited = elapsedOn(clock);
    if (inProgress.kind === 'reject' || waited >= waitUntil) {
      throw new IdempotencyInProgressError(retryAfterMs);
    }
    await sleep(clock, Math.min(inProgress.pollMs, waitUntil - waited, MAX_TIMER_MS));
  }
}

type Acquired = Extract<BeginResult, { kind: 'acquired' }>;

async function runAcquired<O>(
  key: string,
  acquired: Acquired,
  sentAt: number,
  fn: (ctx: IdempotencyContext) => Promise<O> | O,
  options: ResolvedOptions<O>,
): Promise<Outcome<O>> {
  const { store, clock } = options;
  const { token } = acquired;
  const lease = new LeaseKeeper(
    store,
    key,
    token,
    options.leaseMs,
    options.heartbeatMs,
    clock,
    sentAt,
    options.leaseDeadline,
    acquired.leaseUntil,
  );
  const run: AcquiredRun = {
    key,
    token,
    attempt: acquired.attempts,
    resumed: acquired.takeover || acquired.attempts > 1,
    steps: { ...acquired.steps },
    lease,
  };
  const ctx = createContext(run, options as ResolvedOptions<unknown>);

  let value: O;
  lease.start();
  try {
    value = await fn(ctx);
    if (options.shouldStore !== undefined && !options.shouldStore(value)) {
      // Not kept (an HTTP 5xx): released like a failure, so code still running beside it stops.
      lease.finish(true);
      if (run.unstorable !== undefined) {
        // As below: a step's work ran and its result was not kept, so releasing would let a
        // retry run that work again (an HTTP front answering 500 for the step's error).
        await recordFailure(key, token, run.unstorable, options, lease);
      } else {
        await release(key, token, options, lease);
      }
      return { value, replayed: false, key, token };
    }
  } catch (error) {
    lease.finish(true);
    if (run.unstorable !== undefined) {
      // A step's work ran but its result could not be kept: whatever the classification,
      // releasing would let a retry run that work again, so the operation fails for good.
      const settled = await recordFailure(key, token, run.unstorable, options, lease);
      throw settled === run.unstorable ? error : settled;
    }
    if (abortedByLease(error, lease.lostReason)) {
      // fn stopped because the lease was given up on (its heartbeats went unanswered for a
      // whole lease, or another worker took it): what it threw is the abort of ctx.signal
      // (an AbortError, final to the classifier, its cause the lease's error). Recording it
      // would replay "aborted" for the whole ttl, for an operation that never failed on its
      // own: release (steps kept, fenced: nothing is written if another worker holds it) and
      // report the lost lease, retryable, with fn's error as its cause. Any other failure is
      // fn's own and settles as usual (the fenced write refuses it if the lease was taken).
      await release(key, token, options, lease);
      throw error instanceof LeaseLostError
        ? error
        : new LeaseLostError('the lease was lost while the operation ran', error);
    }
    throw await settleFailure(key, token, error, options, lease);
  }
  lease.finish(false);

  let encoded: string;
  try {
    encoded = encodeForStore(options.codec, value, options.maxResultBytes, 'the result');
  } catch (error) {
    // The effect happened but its result cannot be kept: record the failure so that a
    // repeat does not run the effect a second time.
    throw await recordFailure(key, token, error, options, lease);
  }
  let answer: unknown;
  try {
    answer = await store.complete(key, token, encoded, options.ttlMs);
  } catch (error) {
    const failure = storeFailure(store, 'complete', error);
    // The store refused the result for its size (DynamoDB's item limit, steps included): as
    // above, the effect happened, so the failure is recorded rather than left to a takeover.
    if (isStoreRefusal(failure)) throw await recordFailure(key, token, failure, options, lease);
    throw failure;
  }
  const done = checkFenced(store, 'complete', answer);
  if (done.kind === 'lease_lost') {
    const error = new LeaseLostError(
      'the lease was lost before the result could be stored; another worker holds the operation',
    );
    lease.lose(error);
    throw error;
  }
  return { value, replayed: false, key, token };
}

/**
 * Whether `error` is the lease's own abort, once the lease was lost: the lease's error itself,
 * an error whose cause chain holds it (`events.once`, `timers/promises` and other
 * AbortSignal-aware APIs reject with an AbortError whose cause is the signal's reason), or an
 * abort or timeout error.
 */
function abortedByLease(error: unknown, reason: LeaseLostError | undefined): boolean {
  if (reason === undefined) return false;
  // A controller linked to ctx.signal without its reason (`addEventListener('abort', () =>
  // other.abort())`) aborts with a bare AbortError: after the lease was lost, an abort or
  // timeout is taken as its doing. Releasing costs at most one more run; recording would
  // replay "aborted" for the whole ttl.
  return causeChain(error).some((link) => link === reason || isAbortOrTimeout(link));
}

/** An AbortError or TimeoutError; false when its name cannot be read (a getter that throws). */
function isAbortOrTimeout(link: object): boolean {
  try {
    const { name } = link as { name?: unknown };
    return name === 'AbortError' || name === 'TimeoutError';
  } catch {
    return false;
  }
}

/** What to throw after `fn` failed: releases or records the failure first. */
async function settleFailure<O>(
  key: string,
  token: number,
  error: unknown,
  options: ResolvedOptions<O>,
  lease: LeaseKeeper,
): Promise<unknown> {
  let remember: boolean;
  try {
    remember = shouldRemember(options as ResolvedOptions<unknown>, error);
  } catch {
    // The caller's classify or rememberFailures threw: not remembered. Released rather than
    // left in progress for the whole lease, and the caller still gets what `fn` threw.
    remember = false;
  }
  if (remember) return recordFailure(key, token, error, options, lease);
  await release(key, token, options, lease);
  return error;
}

/**
 * Stores `error` as the operation's outcome. Returns what to throw: `error`, or a
 * {@link LeaseLostError} (cause `error`) when the lease was lost. When the store fails to
 * answer, the failure is not remembered (a repeat runs again once the lease ends) and
 * `error` is still what the caller gets.
 */
async function recordFailure<O>(
  key: string,
  token: number,
  error: unknown,
  options: ResolvedOptions<O>,
  lease: LeaseKeeper,
): Promise<unknown> {
  const { store } = options;
  try {
    const text = encodeFailure(error);
    const failed = checkFenced(
      store,
      'fail',
      await callStore(store, 'fail', () => store.fail(key, token, text, options.ttlMs)),
    );
    if (failed.kind === 'lease_lost') {
      const lost = new LeaseLostError(
        'the lease was lost before the failure could be recorded; another worker holds the operation',
        error,
      );
      lease.lose(lost);
      return lost;
    }
  } catch {
    // The store did not answer: the caller still learns what really went wrong.
  }
  return error;
}

/**
 * Ends the lease at once, steps kept, so that a retry resumes without waiting for the lease
 * to run out. A lost lease or a store that does not answer changes nothing for the caller:
 * either way another attempt can take over (at the latest when the lease ends).
 */
async function release<O>(
  key: string,
  token: number,
  options: ResolvedOptions<O>,
  lease: LeaseKeeper,
): Promise<void> {
  const { store } = options;
  try {
    const released = checkFenced(
      store,
      'release',
      await callStore(store, 'release', () => store.release(key, token, options.ttlMs)),
    );
    if (released.kind === 'lease_lost') {
      lease.lose(new LeaseLostError('the lease was already taken over when it was released'));
    }
  } catch {
    // Not released: the lease ends on its own.
  }
}
