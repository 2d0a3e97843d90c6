export {
  defaultClassifier,
  isRetryable,
  isTimeoutError,
  parseRetryAfter,
  retryAfterMs,
} from './classify.js';
export { computeDelay } from './compute-delay.js';
export {
  isAbortedError,
  isAttemptTimeoutError,
  isDeadlineExceededError,
  isNonRetryableError,
  isRetryBudgetExhaustedError,
  isRetryExhaustedError,
} from './guards.js';
export { profiles } from './profiles.js';
export { type RatioBudget, type RatioBudgetOptions, createRatioBudget } from './ratio-budget.js';
export {
  MAX_TIMER_MS,
  RETRY_DEFAULTS,
  type ResolvedRetryOptions,
  resolveRetryOptions,
} from './resolve-options.js';
export { retry } from './retry.js';
export { type RetryPolicy, createRetryPolicy } from './retry-policy.js';
export {
  type TokenBucketBudget,
  type TokenBucketBudgetOptions,
  createTokenBucketBudget,
} from './token-bucket-budget.js';
export type {
  AttemptContext,
  Classifier,
  Disposer,
  GiveUpEvent,
  RetryBudget,
  RetryEvent,
  RetryOptions,
  SuccessEvent,
} from './types.js';
