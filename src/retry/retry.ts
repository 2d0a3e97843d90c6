import { context } from '@opentelemetry/api';
import { type Clock, elapsedOn, setTimerOn, sleep } from '../clock.js';
import {
  AbortedError,
  AttemptTimeoutError,
  DeadlineExceededError,
  InvalidArgumentError,
  RetryBudgetExhaustedError,
  RetryExhaustedError,
} from '../errors.js';
import { observe } from '../observe.js';
import { type BackoffState, initialBackoffState, nextDelay } from './backoff.js';
import { isRetryable, retryAfterMs } from './classify.js';
import {
  type ResolvedRetryOptions,
  defaultRetryOptions,
  resolveRetryOptions,
} from './resolve-options.js';
import type { RetryPolicy } from './retry-policy.js';
import { type CallTelemetry, startCallTelemetry } from './telemetry.js';
import type {
  AttemptContext,
  Classifier,
  GiveUpEvent,
  RetryBudget,
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
): Promise<T>;
/** Runs `fn` under a policy from {@link createRetryPolicy}, as `policy.execute(fn)` does. */
export function retry<T>(
  fn: (ctx: AttemptContext) => Promise<T>,
  policy: RetryPolicy<T>,
): Promise<T>;
export function retry<T>(
  fn: (ctx: AttemptContext) => Promise<T>,
  options?: RetryOptions<T> | RetryPolicy<T>,
): Promise<T> {
  let policy: ResolvedRetryOptions<T>;
  try {
    if (typeof fn !== 'function') {
      throw new InvalidArgumentError(`retry: fn must be a function, got ${typeof fn}`);
    }
    // A policy from createRetryPolicy runs the call itself: its options, budget and listeners.
    if (isRetryPolicy<T>(options)) return options.execute(fn);
    policy = options === undefined ? defaultRetryOptions<T>() : resolveRetryOptions(options);
  } catch (error) {
    return Promise.reject(error);
  }
  return runRetry(policy, fn, policy.signal, undefined);
}

function isRetryPolicy<T>(options: unknown): options is RetryPolicy<T> {
  return (
    typeof options === 'object' &&
    options !== null &&
    typeof (options as { execute?: unknown }).execute === 'function' &&
    typeof (options as { options?: unknown }).options === 'object'
  );
}

/** Listeners registered on a policy (see createRetryPolicy). */
export interface RetryListeners {
  readonly retry: ReadonlySet<(event: RetryEvent) => void>;
  readonly giveUp: ReadonlySet<(event: GiveUpEvent) => void>;
  readonly success: ReadonlySet<(event: SuccessEvent) => void>;
}

/** One retry() call: what every attempt after the first needs. */
interface Call<T> {
  readonly policy: ResolvedRetryOptions<T>;
  readonly fn: (ctx: AttemptContext) => Promise<T>;
  readonly signal: AbortSignal | undefined;
  readonly listeners: RetryListeners | undefined;
  readonly telemetry: CallTelemetry | undefined;
  /** When the call started, on the clock's elapsed timeline (see elapsedOn). */
  readonly start: number;
  /**
   * The deadline on the same elapsed timeline: a step of the wall clock (NTP) neither
   * stretches the time budget nor ends it early.
   */
  readonly deadlineAt: number;
  readonly guarded: boolean;
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
    return context.with(telemetry.context, () =>
      firstAttempt(policy, fn, signal, listeners, telemetry),
    );
  }
  return firstAttempt(policy, fn, signal, listeners, telemetry);
}

/**
 * The first attempt, chained with `.then` rather than awaited in an async function: on the
 * success path (most calls) that saves the async frame, which is most of what a retry
 * wrapper costs. A failure hands over to {@link retryLoop}.
 */
function firstAttempt<T>(
  policy: ResolvedRetryOptions<T>,
  fn: (ctx: AttemptContext) => Promise<T>,
  signal: AbortSignal | undefined,
  listeners: RetryListeners | undefined,
  telemetry: CallTelemetry | undefined,
): Promise<T> {
  const start = elapsedOn(policy.clock);
  const call: Call<T> = {
    policy,
    fn,
    signal,
    listeners,
    telemetry,
    start,
    deadlineAt: policy.deadline === undefined ? Number.POSITIVE_INFINITY : start + policy.deadline,
    guarded:
      policy.attemptTimeout !== undefined || policy.deadline !== undefined || signal !== undefined,
  };
  quietly(policy.budget, 'onRequest');
  if (signal?.aborted) {
    return Promise.reject(giveUp(call, 0, 'aborted', new AbortedError(signal.reason)));
  }
  telemetry?.attempt(1);
  let pending: Promise<T>;
  try {
    pending = runAttempt(call, 1);
  } catch (error) {
    return retryLoop(call, 1, error, false);
  }
  return pending.then(
    (value) => {
      let again: boolean;
      try {
        again = policy.retryOnResult?.(value) === true;
      } catch (error) {
        return retryLoop(call, 1, error, false);
      }
      if (again) return retryLoop(call, 1, value, true);
      succeed(call, 1);
      return value;
    },
    (error: unknown) => retryLoop(call, 1, error, false),
  );
}

/** Starts attempt `attempt`; a `fn` that returns a plain value is tolerated. */
function runAttempt<T>(call: Call<T>, attempt: number): Promise<T> {
  if (call.guarded) {
    return guardedAttempt(
      call.fn,
      attempt,
      call.deadlineAt,
      call.policy.clock,
      call.policy.attemptTimeout,
      call.signal,
    );
  }
  return promised(
    call.fn(new AttemptScope(attempt, wallDeadline(call.policy.clock, call.deadlineAt))),
  );
}

/** `fn`'s answer as a promise; a plain value (the types forbid it, JavaScript does not) wrapped. */
function promised<T>(result: Promise<T>): Promise<T> {
  return typeof (result as { then?: unknown } | undefined)?.then === 'function'
    ? result
    : Promise.resolve(result);
}

function succeed<T>(call: Call<T>, attempts: number): void {
  const { policy, listeners } = call;
  quietly(policy.budget, 'onSuccess');
  call.telemetry?.success(attempts);
  if (policy.onSuccess !== undefined || (listeners && listeners.success.size > 0)) {
    emit(policy.onSuccess, listeners?.success, {
      attempts,
      elapsed: elapsedOn(policy.clock) - call.start,
    });
  }
}

/**
 * Decides what follows the failure of `attempt` (an error, or a result `retryOnResult`
 * rejected) and runs the attempts after it.
 */
async function retryLoop<T>(
  call: Call<T>,
  failedAttempt: number,
  firstFailure: unknown,
  firstFailedWithResult: boolean,
): Promise<T> {
  const { policy, signal, telemetry } = call;
  const { clock, budget } = policy;
  let attempt = failedAttempt;
  let failure = firstFailure;
  let failedWithResult = firstFailedWithResult;
  let state: BackoffState | undefined;

  for (;;) {
    if (signal?.aborted) {
      const aborted = isAborted(failure) ? failure : new AbortedError(signal.reason);
      throw giveUp(call, attempt, 'aborted', aborted);
    }
    // A classifier that throws (a bug in it) decides "not retryable": the attempt's own
    // failure is what the caller gets, after the give-up event, as for any final failure.
    if (!failedWithResult && !retryableOrNot(failure, policy.classify)) {
      throw giveUp(call, attempt, 'not_retryable', failure);
    }
    if (attempt >= policy.maxAttempts) {
      giveUp(call, attempt, 'attempts', failure);
      if (failedWithResult) return failure as T;
      throw new RetryExhaustedError(attempt, failure);
    }

    state ??= initialBackoffState(policy.backoff);
    let delay: number;
    [delay, state] = nextDelay(policy.backoff, state, policy.random);
    if (Number.isNaN(delay)) delay = 0; // base 0 times an overflowed factor^n
    // A Retry-After date is read against the wall clock; the deadline is on the elapsed one.
    const hint = retryAfterMs(failure, clock.now());
    if (hint !== undefined) delay = Math.min(policy.backoff.cap, hint);

    // Never start a sleep that ends past the deadline; an attempt starting exactly at the
    // deadline would have no time left, so that gives up too.
    if (elapsedOn(clock) + delay >= call.deadlineAt) {
      giveUp(call, attempt, 'deadline', failure);
      if (failedWithResult) return failure as T;
      throw new DeadlineExceededError(attempt, failure);
    }
    if (budget !== undefined && !acquired(budget, failure)) {
      giveUp(call, attempt, 'budget', failure);
      if (failedWithResult) return failure as T;
      throw new RetryBudgetExhaustedError(attempt, failure);
    }

    telemetry?.failed(attempt, failure, delay, remainingOf(budget));
    if (policy.onRetry !== undefined || (call.listeners && call.listeners.retry.size > 0)) {
      emit(policy.onRetry, call.listeners?.retry, { attempt, error: failure, delay });
    }
    try {
      await sleep(clock, delay, signal);
    } catch (error) {
      // Aborted while waiting: the retry paid for is not sent, the budget gets it back.
      quietly(budget, 'refundRetry', failure);
      throw giveUp(call, attempt, 'aborted', error);
    }
    // A sleep that ended late (a stalled event loop, a slow timer) may have run into the
    // deadline: no attempt starts past it, not even one with no time left.
    if (elapsedOn(clock) >= call.deadlineAt) {
      // The retry paid for is not sent: the budget gets it back.
      quietly(budget, 'refundRetry', failure);
      giveUp(call, attempt, 'deadline', failure);
      if (failedWithResult) return failure as T;
      throw new DeadlineExceededError(attempt, failure);
    }

    if (signal?.aborted) {
      quietly(budget, 'refundRetry', failure);
      throw giveUp(call, attempt, 'aborted', new AbortedError(signal.reason));
    }
    attempt++;
    telemetry?.attempt(attempt);
    let again: boolean;
    let value: T;
    try {
      value = await runAttempt(call, attempt);
      again = policy.retryOnResult?.(value) === true;
    } catch (error) {
      failure = error;
      failedWithResult = false;
      continue;
    }
    if (!again) {
      succeed(call, attempt);
      return value;
    }
    failure = value;
    failedWithResult = true;
  }
}

/** `isRetryable`, false when the classifier throws. */
function retryableOrNot(failure: unknown, classify: Classifier | undefined): boolean {
  try {
    return isRetryable(failure, classify);
  } catch {
    return false;
  }
}

/**
 * Tells the budget of a request, a success or a refund. A budget that throws (one kept in a
 * store that is down) changes nothing for the call: its outcome is the operation's own.
 */
function quietly(
  budget: RetryBudget | undefined,
  method: 'onRequest' | 'onSuccess' | 'refundRetry',
  failure?: unknown,
): void {
  if (budget === undefined) return;
  // Through observe(): a budget kept in a store may be async, and its rejection, left
  // unhandled, would end the process.
  try {
    if (method === 'refundRetry') observe(budget.refundRetry?.bind(budget), failure);
    else observe(budget[method].bind(budget));
  } catch {
    // Not a function: a budget that cannot be told changes nothing either.
  }
}

/** The budget's tokens left, for telemetry; undefined when it has none or cannot say. */
function remainingOf(budget: RetryBudget | undefined): number | undefined {
  if (budget === undefined) return undefined;
  try {
    return budget.remaining();
  } catch {
    return undefined;
  }
}

/** Whether the budget pays for a retry; a budget that throws (its store down) pays nothing. */
function acquired(budget: RetryBudget, failure: unknown): boolean {
  try {
    return budget.tryAcquireRetry(failure);
  } catch {
    return false;
  }
}

/** Emits the give-up event and returns `error` (for `throw giveUp(...)`). */
function giveUp<T>(
  call: Call<T>,
  attempts: number,
  reason: GiveUpEvent['reason'],
  error: unknown,
): unknown {
  const event: GiveUpEvent = { attempts, error, reason };
  call.telemetry?.giveUp(event);
  if (call.policy.onGiveUp !== undefined || (call.listeners && call.listeners.giveUp.size > 0)) {
    emit(call.policy.onGiveUp, call.listeners?.giveUp, event);
  }
  return error;
}

/**
 * Calls the hook and the listeners. A listener that throws, or returns a promise that
 * rejects, is ignored: observing a call must never change its outcome (an onSuccess that throws after a charge went through
 * would otherwise invite a second charge).
 */
function emit<E>(
  hook: ((event: E) => void) | undefined,
  listeners: ReadonlySet<(event: E) => void> | undefined,
  event: E,
): void {
  observe(hook, event);
  if (listeners === undefined) return;
  for (const listener of listeners) observe(listener, event);
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
 * The deadline as the epoch ms `fn` is given (`ctx.deadline`): the elapsed one carried over to
 * the wall clock as it reads now.
 */
function wallDeadline(clock: Clock, deadlineAt: number): number {
  if (deadlineAt === Number.POSITIVE_INFINITY) return deadlineAt;
  return clock.now() + (deadlineAt - elapsedOn(clock));
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
  const left = deadlineAt - elapsedOn(clock);
  if (left < timeoutMs) timeoutMs = Math.max(0, left);
  // Any finite timeout is timed: setTimerOn chains timers past setTimeout's limit.
  const timed = timeoutMs !== Number.POSITIVE_INFINITY;
  const scope = new AttemptScope(attempt, wallDeadline(clock, deadlineAt), signal, timed);
  if (!timed && signal === undefined) return promised(fn(scope));

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
      cancelTimer = setTimerOn(clock, timeoutMs, () => {
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
