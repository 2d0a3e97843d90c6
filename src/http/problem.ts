import { Buffer } from 'node:buffer';
import { ErrorCode, isReprocessError } from '../errors.js';
import { HttpErrorCode, ResponseNotReplayableError } from './errors.js';
import { type ResponseParts, toResponse } from './stored-response.js';

/**
 * Error responses as RFC 9457 problem details (`application/problem+json`). Each error code
 * has a stable `type` URI, a fixed `title` and status; `detail` says what happened to this
 * request and `code` repeats the reprocess error code for programs.
 */

/** Where the problem type URIs live. They are identifiers: they never change once published. */
export const PROBLEM_BASE = 'https://reprocess.dev/problems/';

/** The media type of every error response. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** One problem type: how an error code looks on the wire. */
export interface ProblemType {
  type: string;
  title: string;
  status: number;
}

/** Error code, URI slug, title, status: one row per problem the HTTP front answers with. */
const PROBLEMS: ReadonlyArray<
  readonly [code: string, slug: string, title: string, status: number]
> = [
  [
    ErrorCode.IDEMPOTENCY_KEY_MISSING,
    'idempotency-key-missing',
    'Idempotency-Key header required',
    400,
  ],
  [
    ErrorCode.IDEMPOTENCY_KEY_INVALID,
    'idempotency-key-invalid',
    'Idempotency-Key header invalid',
    400,
  ],
  [HttpErrorCode.REQUEST_BODY_TOO_LARGE, 'request-body-too-large', 'Request body too large', 413],
  [
    HttpErrorCode.REQUEST_NESTED_TOO_DEEP,
    'request-nested-too-deep',
    'Request nested too deeply to fingerprint',
    400,
  ],
  [
    ErrorCode.IDEMPOTENCY_KEY_REUSE,
    'idempotency-key-reuse',
    'Idempotency-Key reused with a different request',
    422,
  ],
  [
    ErrorCode.IDEMPOTENCY_IN_PROGRESS,
    'idempotency-in-progress',
    'A request with this Idempotency-Key is in progress',
    409,
  ],
  [ErrorCode.RESULT_TOO_LARGE, 'response-not-stored', 'Response too large to replay', 410],
  [ErrorCode.STORE_UNAVAILABLE, 'store-unavailable', 'Idempotency store unavailable', 503],
  [ErrorCode.RECORD_CORRUPT, 'record-corrupt', 'Stored response could not be read', 500],
];

/** The problem type of every error code the HTTP front answers with. */
export const PROBLEM_TYPES: Readonly<Record<string, ProblemType>> = Object.freeze(
  Object.fromEntries(
    PROBLEMS.map(([code, slug, title, status]) => [
      code,
      { type: `${PROBLEM_BASE}${slug}`, title, status },
    ]),
  ),
);

/** The body of a problem response. Extension members (e.g. `retryAfter`) may follow. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  [extension: string]: unknown;
}

/**
 * The problem details for a reprocess error the HTTP front knows, or `undefined` for any
 * other error (a bug in a handler is not ours to describe).
 */
export function problemFor(error: unknown): ProblemDetails | undefined {
  if (!isReprocessError(error)) return undefined;
  const known = PROBLEM_TYPES[error.code];
  if (known === undefined) return undefined;
  const problem: ProblemDetails = {
    type: known.type,
    title: known.title,
    status: known.status,
    detail: error.message,
    code: error.code,
  };
  if (error instanceof ResponseNotReplayableError) problem.originalStatus = error.originalStatus;
  return problem;
}

/** A `Response` carrying `problem`, with `extraHeaders` (e.g. Retry-After). Never cached. */
export function problemResponse(
  problem: ProblemDetails,
  extraHeaders?: Readonly<Record<string, string>>,
): Response {
  return toResponse(problemParts(problem, extraHeaders));
}

/** {@link problemResponse} as {@link ResponseParts}. */
export function problemParts(
  problem: ProblemDetails,
  extraHeaders?: Readonly<Record<string, string>>,
): ResponseParts {
  const headers = new Headers(extraHeaders);
  headers.set('content-type', PROBLEM_CONTENT_TYPE);
  headers.set('cache-control', 'no-store');
  return { status: problem.status, headers, body: Buffer.from(JSON.stringify(problem), 'utf8') };
}

/** Seconds for a Retry-After header: whole seconds, rounded up, at least 1. */
export function retryAfterSeconds(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) return 1;
  return Math.max(1, Math.ceil(ms / 1000));
}
