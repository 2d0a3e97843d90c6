import { causeChain } from '../cause-chain.js';
import type { Classifier } from './types.js';

/*
 * The default classification of DESIGN.md (Retry). Retryable: connection errors, HTTP 408,
 * 429, 500, 502, 503, 504, AWS throttling and transient codes, PostgreSQL serialization
 * failures, deadlocks, admin shutdown and connection exceptions (class 08), attempt
 * timeouts, and any error carrying `retryable: true`. Never: `retryable: false`, other 4xx,
 * caller aborts. Anything the rules do not recognise is NOT retried: a retry is only safe
 * when we know the failure was transient, so unknown errors (a TypeError from a bug, a
 * validation failure) fail fast. Pass `classify: () => true` to retry everything.
 *
 * Decisions worth knowing:
 * - `ENOTFOUND` is not retried: it is almost always a wrong host name, and retrying it
 *   burns the latency budget. `EAI_AGAIN` (the resolver's "try again") is retried.
 * - An error's own boolean `retryable` wins over every other rule. Every reprocess error
 *   carries one (src/errors.ts): the idempotency errors are non-retryable except
 *   `IdempotencyInProgressError` (retry after its hint), `StoreUnavailableError` (the
 *   operation was not run, fail closed, so a retry is safe) and `LeaseLostError`.
 * - AWS throttling codes are checked before the HTTP status, since AWS reports many of them
 *   with status 400.
 * - The `cause` chain is walked (at most {@link MAX_DEPTH} links, cycles ignored); the first
 *   link with an opinion decides. An `AggregateError` is retryable when one of its errors
 *   is and none of them is explicitly not (Node's happy-eyeballs connect failures are
 *   AggregateErrors of ECONNREFUSED).
 */

const MAX_DEPTH = 8;

const CONNECTION_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  // mysql2 and ioredis report a dropped connection this way
  'PROTOCOL_CONNECTION_LOST',
]);

/** AWS SDK throttling and transient error names (v3 `name`, v2 `code`). */
const AWS_CODES: ReadonlySet<string> = new Set([
  'BandwidthLimitExceeded',
  'EC2ThrottledException',
  'LimitExceededException',
  'PriorRequestNotComplete',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ThrottledException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TransactionInProgressException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'InternalFailure',
  'InternalServerError',
  'InternalServerErrorException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
]);

/** PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, admin_shutdown. */
const POSTGRES_CODES: ReadonlySet<string> = new Set(['40001', '40P01', '57P01']);
/** Class 08: connection exception (08000, 08003, 08006, ...). */
const POSTGRES_CONNECTION_CLASS = /^08[0-9A-Z]{3}$/;

const RETRYABLE_STATUS: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/**
 * The default classifier: `true` for the transient failures listed above, `false` for the
 * ones that must never be retried, `undefined` when it has no opinion on this error itself
 * (its `cause` may still have one; {@link isRetryable} walks the chain).
 */
export const defaultClassifier: Classifier = (error) => classifyOne(error);

/**
 * Whether `error` is worth another attempt. `extra` (a user's classifier) is consulted first
 * on every link of the cause chain; where it returns `undefined` the default rules decide.
 * Unrecognised errors are not retryable.
 */
export function isRetryable(error: unknown, extra?: Classifier): boolean {
  return walk(error, extra, 0, undefined) ?? false;
}

/**
 * The verdict {@link isRetryable} reaches along the cause chain and through aggregates, or
 * undefined when nothing recognises the error (for a caller with a rule of its own for
 * unknown errors, such as a consumer's `unknownErrors`).
 */
export function classifyVerdict(error: unknown, extra?: Classifier): boolean | undefined {
  return walk(error, extra, 0, undefined);
}

function walk(
  error: unknown,
  extra: Classifier | undefined,
  depth: number,
  seen: Set<unknown> | undefined,
): boolean | undefined {
  let current = error;
  let visited = seen;
  for (let d = depth; d < MAX_DEPTH; d++) {
    if (extra) {
      const verdict = extra(current);
      if (verdict !== undefined) return verdict;
    }
    const verdict = classifyOne(current);
    if (verdict !== undefined) return verdict;
    if (typeof current !== 'object' || current === null) return undefined;
    if (current instanceof AggregateError || isAggregateLike(current)) {
      visited ??= new Set();
      visited.add(current);
      const members = (current as { errors: unknown[] }).errors;
      let any = false;
      for (const member of members) {
        if (visited.has(member)) continue;
        const memberVerdict = walk(member, extra, d + 1, visited);
        if (memberVerdict === false) return false;
        if (memberVerdict === true) any = true;
      }
      if (any) return true;
    }
    const next = (current as { cause?: unknown }).cause;
    if (next === undefined || next === current) return undefined;
    visited ??= new Set();
    visited.add(current);
    if (visited.has(next)) return undefined;
    current = next;
  }
  return undefined;
}

function isAggregateLike(value: object): boolean {
  return (
    (value as { name?: unknown }).name === 'AggregateError' &&
    Array.isArray((value as { errors?: unknown }).errors)
  );
}

function classifyOne(error: unknown): boolean | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as Record<string, unknown>;

  if (typeof e.retryable === 'boolean') return e.retryable;
  // AWS SDK v3 marks errors its own retry strategy would retry
  if (typeof e.$retryable === 'object' && e.$retryable !== null) return true;

  const name = typeof e.name === 'string' ? e.name : undefined;
  const code =
    typeof e.code === 'string' ? e.code : typeof e.Code === 'string' ? e.Code : undefined;

  if (name === 'AbortError') return false;
  // AbortSignal.timeout() rejects with a DOMException named TimeoutError
  if (name === 'TimeoutError') return true;
  if (name !== undefined && AWS_CODES.has(name)) return true;
  if (code !== undefined) {
    if (AWS_CODES.has(code) || CONNECTION_CODES.has(code)) return true;
    if (POSTGRES_CODES.has(code) || POSTGRES_CONNECTION_CLASS.test(code)) return true;
  }

  const status = statusOf(e);
  if (status !== undefined) {
    if (RETRYABLE_STATUS.has(status)) return true;
    if (status >= 400 && status < 500) return false;
  }
  return undefined;
}

function statusOf(e: Record<string, unknown>): number | undefined {
  if (typeof e.status === 'number') return e.status;
  if (typeof e.statusCode === 'number') return e.statusCode;
  const metadata = e.$metadata as { httpStatusCode?: unknown } | undefined;
  if (typeof metadata?.httpStatusCode === 'number') return metadata.httpStatusCode;
  const response = e.response as { status?: unknown; statusCode?: unknown } | undefined;
  if (typeof response?.status === 'number') return response.status;
  if (typeof response?.statusCode === 'number') return response.statusCode;
  return undefined;
}

/**
 * The server's Retry-After hint carried by an error or a result, in ms from `now`, or
 * `undefined` when there is none. Looks at, in order: a `retryAfterMs` number; a
 * `retryAfter` field (a number is seconds, like the header; a string is a header value);
 * `retry-after-ms` and `retry-after` headers (a plain object, case-insensitive, or a
 * `Headers`) on the value itself, its `response`, or its `$response` (AWS SDK v3); then the
 * `cause` chain. A header value is seconds or an HTTP date; a date in the past gives 0.
 */
export function retryAfterMs(errorOrValue: unknown, now: number): number | undefined {
  for (const link of causeChain(errorOrValue)) {
    const found = hintOf(link as Record<string, unknown>, now);
    if (found !== undefined) return found;
  }
  return undefined;
}

function hintOf(value: Record<string, unknown>, now: number): number | undefined {
  const direct = value.retryAfterMs;
  if (typeof direct === 'number' && Number.isFinite(direct) && direct >= 0) return direct;
  const field = value.retryAfter;
  if (typeof field === 'number' && Number.isFinite(field) && field >= 0) return field * 1000;
  if (typeof field === 'string') {
    const parsed = parseRetryAfter(field, now);
    if (parsed !== undefined) return parsed;
  }
  for (const holder of [value, value.response, value.$response]) {
    if (typeof holder !== 'object' || holder === null) continue;
    const headers = (holder as { headers?: unknown }).headers;
    const fromHeaders = headerHint(headers, now);
    if (fromHeaders !== undefined) return fromHeaders;
  }
  return undefined;
}

function headerHint(headers: unknown, now: number): number | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const ms = header(headers, 'retry-after-ms');
  if (ms !== undefined) {
    const n = Number(ms.trim());
    if (ms.trim() !== '' && Number.isFinite(n) && n >= 0) return n;
  }
  const value = header(headers, 'retry-after');
  return value === undefined ? undefined : parseRetryAfter(value, now);
}

function header(headers: object, name: string): string | undefined {
  const get = (headers as { get?: unknown }).get;
  if (typeof get === 'function') {
    const v: unknown = get.call(headers, name);
    return typeof v === 'string' ? v : undefined;
  }
  for (const [key, v] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    if (typeof v === 'string') return v;
    if (typeof v === 'number') return String(v);
    if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  }
  return undefined;
}

/**
 * A Retry-After header value (delay-seconds or HTTP-date) as ms from `now`; undefined for
 * anything else, so that the backoff applies. A header sent twice reaches fetch's
 * `Headers.get` joined with commas ("5, 5"): the first delay counts. Only text that starts
 * like an HTTP-date (a day name, in all three of its forms) goes to `Date.parse`, which would
 * otherwise read "-1" or "12 30" as dates long past: a retry at once, at a server that asked
 * for a pause.
 */
export function parseRetryAfter(value: string, now: number): number | undefined {
  const text = value.trim();
  const seconds = /^(\d+(?:\.\d+)?)(?:\s*,\s*\d+(?:\.\d+)?)*$/.exec(text);
  if (seconds !== null) return Number(seconds[1]) * 1000;
  if (!HTTP_DATE_START.test(text)) return undefined;
  // asctime() carries no zone, and HTTP means GMT; Date.parse would take local time.
  const at = Date.parse(ASCTIME.test(text) ? `${text} GMT` : text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** How the three HTTP-date forms begin: "Sun, 06 Nov", "Sunday, 06-Nov", "Sun Nov". */
const HTTP_DATE_START = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? /i;
/** asctime(): "Sun Nov  6 08:49:37 1994". */
const ASCTIME = /^[a-z]{3} [a-z]{3} +\d{1,2} \d\d:\d\d:\d\d \d{4}$/i;

const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'ATTEMPT_TIMEOUT',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'RequestTimeout',
  'RequestTimeoutException',
]);

/**
 * Whether a failure was a timeout (an attempt timeout, `ETIMEDOUT`, undici's timeouts, a
 * `TimeoutError`, AWS `RequestTimeout`), looking down the `cause` chain. Retry budgets
 * charge more for a retry after a timeout: a timed-out call may still be loading the
 * dependency.
 */
export function isTimeoutError(error: unknown): boolean {
  return causeChain(error).some((link) => {
    const e = link as { name?: unknown; code?: unknown };
    if (e.name === 'TimeoutError') return true;
    if (typeof e.name === 'string' && TIMEOUT_CODES.has(e.name)) return true;
    return typeof e.code === 'string' && TIMEOUT_CODES.has(e.code);
  });
}
