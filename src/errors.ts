/**
 * Every error reprocess throws. Each has a stable `code`, a `name`, an optional `cause`,
 * and is recognised by {@link isReprocessError} even across two copies of the package
 * (the brand is a registered symbol, not `instanceof`).
 */

const BRAND = Symbol.for('reprocess.error');

/** Stable error codes. They never change meaning once published. */
export const ErrorCode = {
  RETRY_EXHAUSTED: 'RETRY_EXHAUSTED',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  RETRY_BUDGET_EXHAUSTED: 'RETRY_BUDGET_EXHAUSTED',
  ATTEMPT_TIMEOUT: 'ATTEMPT_TIMEOUT',
  ABORTED: 'ABORTED',
  NON_RETRYABLE: 'NON_RETRYABLE',
  IDEMPOTENCY_KEY_MISSING: 'IDEMPOTENCY_KEY_MISSING',
  IDEMPOTENCY_KEY_INVALID: 'IDEMPOTENCY_KEY_INVALID',
  IDEMPOTENCY_KEY_REUSE: 'IDEMPOTENCY_KEY_REUSE',
  IDEMPOTENCY_IN_PROGRESS: 'IDEMPOTENCY_IN_PROGRESS',
  DUPLICATE_REQUEST: 'DUPLICATE_REQUEST',
  LEASE_LOST: 'LEASE_LOST',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  RECORD_CORRUPT: 'RECORD_CORRUPT',
  RESULT_NOT_STORABLE: 'RESULT_NOT_STORABLE',
  RESULT_TOO_LARGE: 'RESULT_TOO_LARGE',
  REPLAYED_FAILURE: 'REPLAYED_FAILURE',
  CONFIG_INVALID: 'CONFIG_INVALID',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ReprocessErrorOptions {
  cause?: unknown;
  /** Override the default retryability of this error class. */
  retryable?: boolean;
}

/** Base class of every reprocess error. */
export class ReprocessError extends Error {
  readonly code: string;
  /** Whether the default classifier retries this error. */
  readonly retryable: boolean;
  /** HTTP status that best describes the error, where one applies. */
  readonly status: number | undefined;

  constructor(
    code: string,
    message: string,
    options: ReprocessErrorOptions & { status?: number; defaultRetryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? options.defaultRetryable ?? false;
    this.status = options.status;
    Object.defineProperty(this, BRAND, { value: true, enumerable: false });
  }
}

/**
 * True when `error` is a reprocess error (from any copy of the package), and when `code` is
 * given, has that code.
 */
export function isReprocessError(error: unknown, code?: string): error is ReprocessError {
  if (typeof error !== 'object' || error === null) return false;
  if ((error as Record<symbol, unknown>)[BRAND] !== true) return false;
  return code === undefined || (error as { code?: unknown }).code === code;
}

// ---------------------------------------------------------------- retry

/** All attempts were used; `cause` is the last error. */
export class RetryExhaustedError extends ReprocessError {
  readonly attempts: number;
  constructor(attempts: number, cause: unknown) {
    super(ErrorCode.RETRY_EXHAUSTED, `gave up after ${attempts} attempt(s): ${describe(cause)}`, {
      cause,
    });
    this.attempts = attempts;
  }
}

/** The total time budget would be passed; `cause` is the last error. */
export class DeadlineExceededError extends ReprocessError {
  readonly attempts: number;
  constructor(attempts: number, cause?: unknown, message?: string) {
    super(
      ErrorCode.DEADLINE_EXCEEDED,
      message ??
        `deadline exceeded after ${attempts} attempt(s)${cause === undefined ? '' : `: ${describe(cause)}`}`,
      { cause },
    );
    this.attempts = attempts;
  }
}

/** The retry budget could not pay for another retry; `cause` is the last error. */
export class RetryBudgetExhaustedError extends ReprocessError {
  readonly attempts: number;
  constructor(attempts: number, cause: unknown) {
    super(
      ErrorCode.RETRY_BUDGET_EXHAUSTED,
      `retry budget exhausted after ${attempts} attempt(s): ${describe(cause)}`,
      { cause },
    );
    this.attempts = attempts;
  }
}

/** One attempt ran past its attempt timeout. Retryable by default. */
export class AttemptTimeoutError extends ReprocessError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super(ErrorCode.ATTEMPT_TIMEOUT, `attempt timed out after ${timeoutMs} ms`, {
      defaultRetryable: true,
      status: 504,
    });
    this.timeoutMs = timeoutMs;
  }
}

/** The caller's AbortSignal fired. */
export class AbortedError extends ReprocessError {
  constructor(cause?: unknown) {
    super(ErrorCode.ABORTED, 'operation aborted by the caller', { cause });
  }
}

/** Marks a failure that must not be retried (goes to quarantine on its first failure). */
export class NonRetryableError extends ReprocessError {
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(options.code ?? ErrorCode.NON_RETRYABLE, message, {
      cause: options.cause,
      retryable: false,
    });
    // Marked as such whatever its code and class name (a subclass with a code of its own).
    Object.defineProperty(this, NON_RETRYABLE_BRAND, { value: true, enumerable: false });
  }
}

/** Marks a NonRetryableError, across copies of the package (a registered symbol). */
export const NON_RETRYABLE_BRAND: unique symbol = Symbol.for('reprocess.NonRetryableError');

// ---------------------------------------------------------------- idempotency

/** A required idempotency key was not supplied. [400] */
export class IdempotencyKeyMissingError extends ReprocessError {
  constructor(message = 'an idempotency key is required but none was given') {
    super(ErrorCode.IDEMPOTENCY_KEY_MISSING, message, { status: 400 });
  }
}

/** The idempotency key is empty, too long, not a string or has control characters. [400] */
export class IdempotencyKeyInvalidError extends ReprocessError {
  constructor(message: string) {
    super(ErrorCode.IDEMPOTENCY_KEY_INVALID, message, { status: 400 });
  }
}

/** The key was used before with a different payload (fingerprint mismatch). [422] */
export class IdempotencyKeyReuseError extends ReprocessError {
  constructor(message = 'this idempotency key was already used with a different payload') {
    super(ErrorCode.IDEMPOTENCY_KEY_REUSE, message, { status: 422 });
  }
}

/** The same operation is running elsewhere. [409] Retryable after `retryAfterMs`. */
export class IdempotencyInProgressError extends ReprocessError {
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number, message?: string) {
    super(
      ErrorCode.IDEMPOTENCY_IN_PROGRESS,
      message ?? `the operation is already in progress; retry after ${retryAfterMs} ms`,
      { status: 409, defaultRetryable: true },
    );
    this.retryAfterMs = Math.max(0, Math.ceil(retryAfterMs));
  }
}

/** A repeat of a completed operation under `onDuplicate: 'reject'`. [409] */
export class DuplicateRequestError extends ReprocessError {
  constructor(message = 'this operation was already completed') {
    super(ErrorCode.DUPLICATE_REQUEST, message, { status: 409 });
  }
}

/** The lease of this worker was taken over (its fencing token is stale). */
export class LeaseLostError extends ReprocessError {
  constructor(message = 'the lease on this operation was lost to another worker', cause?: unknown) {
    super(ErrorCode.LEASE_LOST, message, { cause, defaultRetryable: true });
  }
}

/** The store did not answer. The operation was not run (fail closed). [503] */
export class StoreUnavailableError extends ReprocessError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.STORE_UNAVAILABLE, message, { cause, status: 503, defaultRetryable: true });
  }
}

/** A stored record could not be read back. [500] */
export class RecordCorruptError extends ReprocessError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.RECORD_CORRUPT, message, { cause, status: 500 });
  }
}

/** The operation's result cannot be stored (not encodable, or over the size bound). */
export class ResultNotStorableError extends ReprocessError {
  constructor(message: string, cause?: unknown, code: string = ErrorCode.RESULT_NOT_STORABLE) {
    super(code, message, { cause, status: 500 });
  }
}

/** Invalid configuration; `issues` lists every problem with its path. */
export class ConfigError extends ReprocessError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[], source?: string) {
    const head = source ? `invalid configuration in ${source}` : 'invalid configuration';
    const lines = issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`);
    super(ErrorCode.CONFIG_INVALID, [head, ...lines].join('\n'));
    this.issues = issues;
  }
}

export interface ConfigIssue {
  /** Dotted path of the offending field, e.g. `retry_policy.jitter`. */
  path: string;
  message: string;
}

/** A public function was called with an argument it cannot accept. */
export class InvalidArgumentError extends ReprocessError {
  constructor(message: string) {
    super(ErrorCode.INVALID_ARGUMENT, message);
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
