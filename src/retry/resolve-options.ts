import { type Clock, systemClock } from '../clock.js';
import { type Duration, toMs } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import type { Random } from '../random.js';
import { type BackoffKind, type BackoffOptions, normalizeBackoff } from './backoff.js';
import type { JitterKind } from './jitter.js';
import type {
  Classifier,
  GiveUpEvent,
  RetryBudget,
  RetryEvent,
  RetryOptions,
  SuccessEvent,
} from './types.js';

/** Defaults of {@link RetryOptions} (see docs/readme/retry.md). */
export const RETRY_DEFAULTS = Object.freeze({
  maxAttempts: 3,
  backoff: 'exponential' as BackoffKind,
  base: 100,
  factor: 2,
  cap: 30_000,
  jitter: 'full' as JitterKind,
});

/**
 * The largest delay, cap or attempt timeout: what `setTimeout` can wait (about 24.8 days).
 * A longer wait would silently fire at once.
 */
export const MAX_TIMER_MS = 2_147_483_647;

const BACKOFF_KINDS: readonly string[] = ['constant', 'linear', 'exponential'];
const JITTER_KINDS: readonly string[] = ['none', 'full', 'equal', 'decorrelated'];

/** {@link RetryOptions} validated, with defaults filled and every duration in ms. */
export interface ResolvedRetryOptions<T = unknown> {
  readonly maxAttempts: number;
  readonly backoff: Readonly<Required<BackoffOptions>>;
  /** Total time budget in ms, or undefined for none. */
  readonly deadline: number | undefined;
  /** Per-attempt timeout in ms, or undefined for none. */
  readonly attemptTimeout: number | undefined;
  readonly signal: AbortSignal | undefined;
  readonly classify: Classifier | undefined;
  readonly retryOnResult: ((value: T) => boolean) | undefined;
  readonly budget: RetryBudget | undefined;
  readonly clock: Clock;
  readonly random: Random;
  readonly name: string | undefined;
  readonly onRetry: ((event: RetryEvent) => void) | undefined;
  readonly onGiveUp: ((event: GiveUpEvent) => void) | undefined;
  readonly onSuccess: ((event: SuccessEvent) => void) | undefined;
}

// Frozen option objects (the profiles, a user's Object.freeze'd policy) cannot change, so
// their resolution is computed once.
const frozenCache = new WeakMap<object, ResolvedRetryOptions<never>>();
let defaultResolved: ResolvedRetryOptions<never> | undefined;

/**
 * Validates `options`, fills the defaults (3 attempts, exponential from 100ms, factor 2,
 * cap 30s, full jitter, no deadline, no attempt timeout) and converts durations to ms.
 * A bad value throws {@link InvalidArgumentError} naming the field.
 */
export function resolveRetryOptions<T = unknown>(
  options: RetryOptions<T> = {},
): ResolvedRetryOptions<T> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`retry options must be an object, got ${String(options)}`);
  }
  const frozen = Object.isFrozen(options);
  if (frozen) {
    const hit = frozenCache.get(options);
    if (hit) return hit as ResolvedRetryOptions<T>;
  }
  const resolved = resolveFresh(options);
  if (frozen) frozenCache.set(options, resolved as ResolvedRetryOptions<never>);
  return resolved;
}

/** The resolution of `retry(fn)` without options, computed once. */
export function defaultRetryOptions<T>(): ResolvedRetryOptions<T> {
  defaultResolved ??= resolveFresh({}) as ResolvedRetryOptions<never>;
  return defaultResolved as ResolvedRetryOptions<T>;
}

/** Every field of {@link RetryOptions}: anything else is a typo the caller must hear about. */
const OPTION_NAMES: ReadonlySet<string> = new Set([
  'maxAttempts',
  'backoff',
  'base',
  'factor',
  'cap',
  'jitter',
  'deadline',
  'attemptTimeout',
  'signal',
  'classify',
  'retryOnResult',
  'budget',
  'clock',
  'random',
  'name',
  'onRetry',
  'onGiveUp',
  'onSuccess',
]);

function resolveFresh<T>(options: RetryOptions<T>): ResolvedRetryOptions<T> {
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) {
      throw new InvalidArgumentError(
        `unknown retry option ${JSON.stringify(name)}; the options are ${[...OPTION_NAMES].join(', ')}`,
      );
    }
  }
  const maxAttempts = options.maxAttempts ?? RETRY_DEFAULTS.maxAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidArgumentError(
      `maxAttempts must be an integer >= 1 (attempts, not retries), got ${String(maxAttempts)}`,
    );
  }
  const kind = options.backoff ?? RETRY_DEFAULTS.backoff;
  if (!BACKOFF_KINDS.includes(kind)) {
    throw new InvalidArgumentError(
      `backoff must be one of ${BACKOFF_KINDS.join(', ')}; got ${JSON.stringify(kind)}`,
    );
  }
  const jitter = options.jitter ?? RETRY_DEFAULTS.jitter;
  if (!JITTER_KINDS.includes(jitter)) {
    throw new InvalidArgumentError(
      `jitter must be one of ${JITTER_KINDS.join(', ')}; got ${JSON.stringify(jitter)}`,
    );
  }
  const factor = options.factor ?? RETRY_DEFAULTS.factor;
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1) {
    throw new InvalidArgumentError(`factor must be a finite number >= 1, got ${String(factor)}`);
  }
  const base = timerMs(options.base ?? RETRY_DEFAULTS.base, 'base');
  const cap = timerMs(options.cap ?? RETRY_DEFAULTS.cap, 'cap');
  const deadline = positiveMs(options.deadline, 'deadline');
  const attemptTimeout = positiveMs(options.attemptTimeout, 'attemptTimeout');
  if (attemptTimeout !== undefined && attemptTimeout > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`attemptTimeout must be at most ${MAX_TIMER_MS} ms`);
  }
  checkFunction(options.classify, 'classify');
  checkFunction(options.retryOnResult, 'retryOnResult');
  checkFunction(options.random, 'random');
  checkFunction(options.onRetry, 'onRetry');
  checkFunction(options.onGiveUp, 'onGiveUp');
  checkFunction(options.onSuccess, 'onSuccess');
  const clock = options.clock ?? systemClock;
  if (typeof clock.now !== 'function' || typeof clock.setTimer !== 'function') {
    throw new InvalidArgumentError('clock must have now() and setTimer()');
  }
  const budget = options.budget;
  if (budget !== undefined) checkBudget(budget);
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError('signal must be an AbortSignal');
  }
  // Frozen: a resolution may be shared (the profiles, any frozen options), so nobody may
  // change it for the others through a policy's `options`.
  return Object.freeze({
    maxAttempts,
    backoff: Object.freeze(normalizeBackoff({ kind, base, factor, cap, jitter })),
    deadline,
    attemptTimeout,
    signal,
    classify: options.classify,
    retryOnResult: options.retryOnResult,
    budget,
    clock,
    random: options.random ?? Math.random,
    name: options.name,
    onRetry: options.onRetry,
    onGiveUp: options.onGiveUp,
    onSuccess: options.onSuccess,
  });
}

function timerMs(value: Duration, field: string): number {
  const ms = toMs(value, field);
  if (ms > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`${field} must be at most ${MAX_TIMER_MS} ms, got ${ms}`);
  }
  return ms;
}

function positiveMs(value: Duration | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = toMs(value, field);
  if (ms <= 0) throw new InvalidArgumentError(`${field} must be greater than 0, got ${ms}`);
  return ms;
}

/** A {@link RetryBudget}: its four methods (and `refundRetry`, when it has one) functions. */
function checkBudget(budget: unknown): asserts budget is RetryBudget {
  if (typeof budget !== 'object' || budget === null) {
    throw new InvalidArgumentError(
      `budget must be a RetryBudget (createTokenBucketBudget(), createRatioBudget()), got ${budget === null ? 'null' : typeof budget}`,
    );
  }
  for (const method of ['onRequest', 'tryAcquireRetry', 'onSuccess', 'remaining']) {
    if (typeof (budget as Record<string, unknown>)[method] !== 'function') {
      throw new InvalidArgumentError(`budget must implement RetryBudget: it has no ${method}()`);
    }
  }
  const refund = (budget as Record<string, unknown>).refundRetry;
  if (refund !== undefined && typeof refund !== 'function') {
    throw new InvalidArgumentError('budget.refundRetry must be a function when given');
  }
}

function checkFunction(value: unknown, field: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidArgumentError(`${field} must be a function, got ${typeof value}`);
  }
}
