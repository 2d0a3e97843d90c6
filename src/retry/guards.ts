import {
  type AbortedError,
  type AttemptTimeoutError,
  type DeadlineExceededError,
  ErrorCode,
  NON_RETRYABLE_BRAND,
  type NonRetryableError,
  type RetryBudgetExhaustedError,
  type RetryExhaustedError,
  isReprocessError,
} from '../errors.js';

/*
 * Type guards for the retry errors. They go by the error's brand and stable `code` (see
 * isReprocessError), not `instanceof`, so they hold across two copies of the package.
 */

/** All attempts were used (`attempts`, `cause` = last error). */
export function isRetryExhaustedError(error: unknown): error is RetryExhaustedError {
  return isReprocessError(error, ErrorCode.RETRY_EXHAUSTED);
}

/** The deadline would have been passed (`cause` = last error). */
export function isDeadlineExceededError(error: unknown): error is DeadlineExceededError {
  return isReprocessError(error, ErrorCode.DEADLINE_EXCEEDED);
}

/** The retry budget could not pay for another retry. */
export function isRetryBudgetExhaustedError(error: unknown): error is RetryBudgetExhaustedError {
  return isReprocessError(error, ErrorCode.RETRY_BUDGET_EXHAUSTED);
}

/** One attempt ran past its timeout. */
export function isAttemptTimeoutError(error: unknown): error is AttemptTimeoutError {
  return isReprocessError(error, ErrorCode.ATTEMPT_TIMEOUT);
}

/** The caller's signal aborted the call. */
export function isAbortedError(error: unknown): error is AbortedError {
  return isReprocessError(error, ErrorCode.ABORTED);
}

/** A failure marked as never retryable (whatever `code` it was given, and in a subclass). */
export function isNonRetryableError(error: unknown): error is NonRetryableError {
  return (
    isReprocessError(error) &&
    ((error as unknown as Record<symbol, unknown>)[NON_RETRYABLE_BRAND] === true ||
      error.code === ErrorCode.NON_RETRYABLE ||
      error.name === 'NonRetryableError')
  );
}
