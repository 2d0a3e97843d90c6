import { context } from '@opentelemetry/api';
import { type Clock, sleep } from '../clock.js';
import {
  AbortedError,
  AttemptTimeoutError,
  DeadlineExceededError,
  InvalidArgumentError,
  RetryBudgetExhaustedError,
  RetryExhaustedError,
} from '../errors.js';
import { type BackoffState, initialBackoffState, nextDelay } from './backoff.js';
import { isRetryable, retryAfterMs } from './classify.js';
import {
  MAX_TIMER_MS,
  type ResolvedRetryOptions,
  defaultRetryOptions,
  resolveRetryOptions,
} from './resolve-options.js';
import { type CallTelemetry, startCallTelemetry } from './telemetry.js';
import type {
  AttemptContext,
  GiveUpEvent,
  RetryEvent,
  RetryOptions,
  SuccessEvent,
} from './types.js';

/**
 * Calls `fn` until it succeeds, the failure is not retryable, `maxAttempts` calls were made,
 * the next attempt would start past the deadline, the budget refuses a retry, or the
 * caller's signal aborts. Each attempt gets `{ attempt, signal, deadline }`.
 *
 * How it ends:
 * - success: the value (a value `retryOnResult` rejects counts as a failure);
 * - a non-retryable error: that error, rethrown as it is (not wrapped), so callers keep
 *   matching on their own error types;
 * - attempts used up: {@link RetryExhaustedError} (`attempts`, `cause` = last error);
 * - the next sleep would end at or past the deadline: {@link DeadlineExceededError} at once;
 * - the budget cannot pay: {@link RetryBudgetExhaustedError} at once;
 * - the caller's signal aborts (during an attempt or a sleep): {@link AbortedError} at once,
 *   and no further attempt;
 * - when the last failure was a *result* (`retryOnResult`), giving up returns that result
 *   instead of throwing, as cockatiel does: the caller inspects it like any response.
 *
 * An attempt that outlives `attemptTimeout` (or the time left before the deadline) fails
 * with {@link AttemptTimeoutError} (retryable) and its signal aborts; a Retry-After carried
 * by a failure (error or result) replaces the computed delay, bounded by `cap` and the
 * deadline.
 *
 * @example
 * const user = await retry(({ signal }) => fetchUser(id, { signal }), {
 *   maxAttempts: 4, base: '100ms', cap: '2s', deadline: '3s',
 * });
 */
export function retry<T>(
  fn: (ctx: AttemptContext) => Promise<T>,
  options?: RetryOptions<T>,
): Promise<T> {
  let policy: ResolvedRetryOptions<T>;
  try {
    if (typeof fn !== 'function') {
      throw new InvalidArgumentError(`retry: fn must be a function, got ${typeof fn}`);
    }
    policy = options === undefined ? defaultRetryOptions<T>() : resolveRetryOptions(options);
  } catch (error) {
    return Promise.reject(error);
  }
  return runRetry(policy, fn, policy.signal, undefined);
}

/** Listeners registered on a policy (see createRetryPolicy). */
export interface RetryListeners {
  readonly retry: ReadonlySet<(event: RetryEvent) => void>;
  readonly giveUp: ReadonlySet<(event: GiveUpEvent) => void>;
  readonly success: ReadonlySet<(event: SuccessEvent) => void>;
}

/** The retry loop on resolved options; `signal` is the caller's (may differ from policy.signal). */
export function runRetry<T>(
  policy: ResolvedRetryOptions<T>,
  fn: (ctx: AttemptContext) => Promise<T>,
  signal: AbortSignal | undefined,
  listeners: RetryListeners | undefined,
): Promise<T> {
  const telemetry = startCallTelemetry(policy.name, policy.maxAttempts);
  if (telemetry?.context) {
    return context.with(telemetry.context, () => loop(policy, fn, signal, listeners, telemetry));
  }
  return loop(policy, fn, signal, listeners, telemetry);
}

async function loop<T>(
  policy: ResolvedRetryOptions<T>,
  fn: (ctx: AttemptContext) => Promise<T>,
  signal: AbortSignal | undefined,
  listeners: RetryListeners | undefined,
  telemetry: CallTelemetry | undefined,
): Promise<T> {
  const clock = policy.clock;
  const start = clock.now();
  const deadlineAt =
    policy.deadline === undefined ? Number.POSITIVE_INFINITY : start + policy.deadline;
  const guarded =
    policy.attemptTimeout !== undefined || policy.deadline !== undefined || signal !== undefined;
  const budget = policy.budget;
  budget?.onRequest();
  let state: BackoffState | undefined;

  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) {
      throw giveUp(
        policy,
        listeners,
        telemetry,
        attempt - 1,
        'aborted',
        new AbortedError(signal.reason),
      );
    }
    telemetry?.attempt(attempt);
    let failure: unknown;
    let failedWithResult = false;
    try {
      const value = guarded
        ? await guardedAttempt(fn, attempt, deadlineAt, clock, policy.attemptTimeout, signal)
        : await fn(new AttemptScope(attempt, deadlineAt));
      if (policy.retryOnResult === undefined || !policy.retryOnResult(value)) {
        budget?.onSuccess();
        if (telemetry) telemetry.success(attempt);
        if (policy.onSuccess !== undefined || (listeners && listeners.success.size > 0)) {
          emit(policy.onSuccess, listeners?.success, {
            attempts: attempt,
            elapsed: clock.now() - start,
          });
        }
        return value;
      }
      failure = value;
      failedWithResult = true;
    } catch (error) {
      failure = error;
    }

    if (signal?.aborted) {
      const aborted = isAborted(failure) ? failure : new AbortedError(signal.reason);
      throw giveUp(policy, listeners, telemetry, attempt, 'aborted', aborted);
    }
    if (!failedWithResult && !isRetryable(failure, policy.classify)) {
      throw giveUp(policy, listeners, telemetry, attempt, 'not_retryable', failure);
    }
    if (attempt >= policy.maxAttempts) {
      giveUp(policy, listeners, telemetry, attempt, 'attempts', failure);
      if (failedWithResult) return failure as T;
      throw new RetryExhaustedError(attempt, failure);
    }

    state ??= initialBackoffState(policy.backoff);
    let delay: number;
    [delay, state] = nextDelay(policy.backoff, state, policy.random);
    if (Number.isNaN(delay)) delay = 0; // base 0 times an overflowed factor^n
    const now = clock.now();
    const hint = retryAfterMs(failure, now);
    if (hint !== undefined) delay = Math.min(policy.backoff.cap, hint);

    // Never start a sleep that ends past the deadline; an attempt starting exactly at the
    // deadline would have no time left, so that gives up too.
    if (now + delay >= deadlineAt) {
      giveUp(policy, listeners, telemetry, attempt, 'deadline', failure);
      if (failedWithResult) return failure as T;
      throw new DeadlineExceededError(attempt, failure);
    }
    if (budget !== undefined && !budget.tryAcquireRetry(failure)) {
      giveUp(policy, listeners, telemetry, attempt, 'budget', failure);
      if (failedWithResult) return failure as T;
      throw new RetryBudgetExhaustedError(attempt, failure);
    }

    telemetry?.failed(attempt, failure, delay, budget?.remaining());
    if (policy.onRetry !== undefined || (listeners && listeners.retry.size > 0)) {
      emit(policy.onRetry, listeners?.retry, { attempt, error: failure, delay });
    }
    try {
      await sleep(clock, delay, signal);
    } catch (error) {
      throw giveUp(policy, listeners, telemetry, attempt, 'aborted', error);
    }
  }
}

/** Emits the give-up event and returns `error` (for `throw giveUp(...)`). */
function giveUp<T>(
  policy: ResolvedRetryOptions<T>,
  listeners: RetryListeners | undefined,
  telemetry: CallTelemetry | undefined,
  attempts: number,
  reason: GiveUpEvent['reason'],
  error: unknown,
): unknown {
  const event: GiveUpEvent = { attempts, error, reason };
  telemetry?.giveUp(event);
  if (policy.onGiveUp !== undefined || (listeners && listeners.giveUp.size > 0)) {
    emit(policy.onGiveUp, listeners?.giveUp, event);
  }
  return error;
}

/**
 * Calls the hook and the listeners. A listener that throws is ignored: observing a call
 * must never change its outcome (an onSuccess that throws after a charge went through
 * would otherwise invite a second charge).
 */
function emit<E>(
  hook: ((event: E) => void) | undefined,
  listeners: ReadonlySet<(event: E) => void> | undefined,
  event: E,
): void {
  if (hook !== undefined) {
    try {
      hook(event);
    } catch {
      // see above
    }
  }
  if (listeners === undefined) return;
  for (const listener of listeners) {
    try {
      listener(event);
    } catch {
      // see above
    }
  }
}

function isAborted(error: unknown): error is AbortedError {
  return error instanceof AbortedError;
}

/**
 * The context given to an attempt. Its signal is created only if `fn` reads it, so an
 * attempt that never looks at it costs no AbortController. It follows the caller's signal
 * and, when the attempt is timed, aborts at the timeout.
 */
class AttemptScope implements AttemptContext {
  readonly attempt: number;
  readonly deadline: number;
  #parent: AbortSignal | undefined;
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  /** An untimed attempt hands out `parent` (the caller's signal) as it is. */
  constructor(attempt: number, deadline: number, parent?: AbortSignal, timed = false) {
    this.attempt = attempt;
    this.deadline = deadline;
    this.#parent = timed ? undefined : parent;
  }

  get signal(): AbortSignal {
    if (this.#parent !== undefined) return this.#parent;
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/**
 * One attempt raced against its timeout (the attempt timeout or the time left before the
 * deadline, whichever is shorter) and the caller's signal. Whichever fires first aborts the
 * attempt's signal and settles the attempt at once, even when `fn` ignores its signal.
 */
function guardedAttempt<T>(
  fn: (ctx: AttemptContext) => Promise<T>,
  attempt: number,
  deadlineAt: number,
  clock: Clock,
  attemptTimeout: number | undefined,
  signal: AbortSignal | undefined,
): Promise<T> {
  let timeoutMs = attemptTimeout ?? Number.POSITIVE_INFINITY;
  const left = deadlineAt - clock.now();
  if (left < timeoutMs) timeoutMs = Math.max(0, left);
  const timed = timeoutMs <= MAX_TIMER_MS;
  const scope = new AttemptScope(attempt, deadlineAt, signal, timed);
  if (!timed && signal === undefined) return fn(scope);

  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let cancelTimer: (() => void) | undefined;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      cancelTimer?.();
      signal?.removeEventListener('abort', onAbort);
      return true;
    };
    const onAbort = (): void => {
      if (!settle()) return;
      scope.abort(signal?.reason);
      reject(new AbortedError(signal?.reason));
    };
    if (timed) {
      cancelTimer = clock.setTimer(timeoutMs, () => {
        if (!settle()) return;
        const error = new AttemptTimeoutError(timeoutMs);
        scope.abort(error);
        reject(error);
      });
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    let pending: Promise<T>;
    try {
      pending = Promise.resolve(fn(scope));
    } catch (error) {
      if (settle()) reject(error);
      return;
    }
    pending.then(
      (value) => {
        if (settle()) resolve(value);
      },
      (error: unknown) => {
        if (settle()) reject(error);
      },
    );
  });
}
