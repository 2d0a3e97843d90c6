import { ErrorCode, ReprocessError } from '../errors.js';

/** Codes of the errors only the HTTP front raises (the shared ones live in `ErrorCode`). */
export const HttpErrorCode = {
  REQUEST_BODY_TOO_LARGE: 'REQUEST_BODY_TOO_LARGE',
  REQUEST_NESTED_TOO_DEEP: 'REQUEST_NESTED_TOO_DEEP',
} as const;

/** A request body is larger than the middleware buffers for fingerprinting. [413] */
export class RequestBodyTooLargeError extends ReprocessError {
  readonly limit: number;
  constructor(limit: number, declared?: number) {
    super(
      HttpErrorCode.REQUEST_BODY_TOO_LARGE,
      declared === undefined
        ? `the request body is larger than the limit of ${limit} bytes`
        : `the request body (${declared} bytes) is larger than the limit of ${limit} bytes`,
      { status: 413 },
    );
    this.limit = limit;
  }
}

/**
 * What the request is fingerprinted by (a body parsed before the middleware, or what the
 * `fingerprint` option returned) is nested deeper than the fingerprint goes. [400]
 */
export class RequestNestedTooDeepError extends ReprocessError {
  readonly maxDepth: number;
  constructor(maxDepth: number) {
    super(
      HttpErrorCode.REQUEST_NESTED_TOO_DEEP,
      `the request is nested deeper than ${maxDepth} levels, too deep to fingerprint`,
      { status: 400 },
    );
    this.maxDepth = maxDepth;
  }
}

/**
 * The request was already processed, but its response was larger than the replay bound and
 * was not stored. The operation will not run again under this key. [410]
 */
export class ResponseNotReplayableError extends ReprocessError {
  /** Status of the response the first request got. */
  readonly originalStatus: number;
  /** The bound on stored response bodies, in bytes, when the response was made. */
  readonly limit: number;
  constructor(originalStatus: number, limit: number, unseen = false) {
    super(
      ErrorCode.RESULT_TOO_LARGE,
      `this request was already processed (status ${originalStatus}), but its response ` +
        (unseen
          ? 'was written straight to the connection, so it was not stored and cannot be replayed; '
          : `was too large to store (a body over ${limit} bytes, or its replayed headers over 48 KiB), so it cannot be replayed; `) +
        'the operation will not run again under this key. Use a new key for a new operation.',
      { status: 410 },
    );
    this.originalStatus = originalStatus;
    this.limit = limit;
  }
}
