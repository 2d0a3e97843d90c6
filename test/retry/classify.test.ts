import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  AttemptTimeoutError,
  DuplicateRequestError,
  IdempotencyInProgressError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyMissingError,
  IdempotencyKeyReuseError,
  NonRetryableError,
  RecordCorruptError,
  RetryExhaustedError,
} from '../../src/errors.js';
import {
  defaultClassifier,
  isRetryable,
  isTimeoutError,
  parseRetryAfter,
  retryAfterMs,
} from '../../src/retry/classify.js';
import { codeError, statusError } from './helpers.js';

describe('isRetryable: the default classifier', () => {
  it.each([
    'ECONNRESET',
    'ECONNREFUSED',
    'ETIMEDOUT',
    'EPIPE',
    'EAI_AGAIN',
    'UND_ERR_SOCKET',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
  ])('retries connection error %s', (code) => {
    expect(isRetryable(codeError(code))).toBe(true);
  });

  it('does not retry ENOTFOUND (a wrong host name) nor undici argument errors', () => {
    expect(isRetryable(codeError('ENOTFOUND'))).toBe(false);
    expect(isRetryable(codeError('UND_ERR_INVALID_ARG'))).toBe(false);
  });

  it.each([408, 429, 500, 502, 503, 504])('retries HTTP %i', (status) => {
    expect(isRetryable(statusError(status))).toBe(true);
  });

  it.each([400, 401, 403, 404, 409, 410, 422])('never retries HTTP %i', (status) => {
    expect(isRetryable(statusError(status))).toBe(false);
  });

  it('reads the status from statusCode, $metadata.httpStatusCode and response.status', () => {
    expect(isRetryable(Object.assign(new Error('x'), { statusCode: 503 }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 500 } }))).toBe(
      true,
    );
    expect(isRetryable(Object.assign(new Error('x'), { response: { status: 429 } }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('x'), { response: { status: 404 } }))).toBe(false);
  });

  it.each([
    'ThrottlingException',
    'ProvisionedThroughputExceededException',
    'RequestLimitExceeded',
    'TooManyRequestsException',
    'RequestThrottled',
    'SlowDown',
    'TransactionInProgressException',
    'ServiceUnavailable',
    'InternalServerError',
  ])('retries AWS %s even when reported with status 400', (name) => {
    const error = Object.assign(new Error(name), { name, $metadata: { httpStatusCode: 400 } });
    expect(isRetryable(error)).toBe(true);
  });

  it('retries AWS errors flagged $retryable and v2-style code fields', () => {
    expect(isRetryable(Object.assign(new Error('x'), { $retryable: { throttling: true } }))).toBe(
      true,
    );
    expect(isRetryable(codeError('ThrottlingException'))).toBe(true);
  });

  it('does not retry other AWS client errors', () => {
    const error = Object.assign(new Error('bad'), {
      name: 'ValidationException',
      $metadata: { httpStatusCode: 400 },
    });
    expect(isRetryable(error)).toBe(false);
  });

  it.each(['40001', '40P01', '57P01', '08000', '08003', '08006'])(
    'retries PostgreSQL %s',
    (code) => {
      expect(isRetryable(codeError(code))).toBe(true);
    },
  );

  it('does not retry other PostgreSQL errors (unique violation, syntax error)', () => {
    expect(isRetryable(codeError('23505'))).toBe(false);
    expect(isRetryable(codeError('42601'))).toBe(false);
  });

  it('follows an explicit retryable flag before anything else', () => {
    expect(isRetryable(Object.assign(new Error('x'), { retryable: true }))).toBe(true);
    expect(isRetryable(Object.assign(codeError('ECONNRESET'), { retryable: false }))).toBe(false);
    expect(isRetryable(statusError(503, { retryable: false }))).toBe(false);
  });

  it('retries attempt timeouts and AbortSignal.timeout, not caller aborts', async () => {
    expect(isRetryable(new AttemptTimeoutError(100))).toBe(true);
    const timeout = AbortSignal.timeout(1);
    await new Promise((r) => timeout.addEventListener('abort', r));
    expect(isRetryable(timeout.reason)).toBe(true);
    const controller = new AbortController();
    controller.abort();
    expect(isRetryable(controller.signal.reason)).toBe(false);
  });

  it('never retries idempotency errors except IdempotencyInProgressError', () => {
    expect(isRetryable(new IdempotencyInProgressError(500))).toBe(true);
    for (const error of [
      new IdempotencyKeyMissingError(),
      new IdempotencyKeyInvalidError('empty'),
      new IdempotencyKeyReuseError(),
      new DuplicateRequestError(),
      new RecordCorruptError('bad json'),
      new NonRetryableError('no', { cause: codeError('ECONNRESET') }),
      new RetryExhaustedError(3, codeError('ECONNRESET')),
    ]) {
      expect(isRetryable(error), error.name).toBe(false);
    }
  });

  it('does not retry what it does not recognise', () => {
    expect(isRetryable(new Error('boom'))).toBe(false);
    expect(isRetryable(new TypeError('x is not a function'))).toBe(false);
    expect(isRetryable('a string')).toBe(false);
    expect(isRetryable(undefined)).toBe(false);
    expect(isRetryable(null)).toBe(false);
  });

  it('walks cause chains', () => {
    const deep = new Error('outer', {
      cause: new Error('middle', { cause: codeError('ECONNRESET') }),
    });
    expect(isRetryable(deep)).toBe(true);
    expect(isRetryable(new Error('outer', { cause: new Error('inner') }))).toBe(false);
  });

  it('the first link with an opinion decides', () => {
    const wrapped = statusError(400, { cause: codeError('ECONNRESET') });
    expect(isRetryable(wrapped)).toBe(false);
  });

  it('stops on cyclic and very deep chains', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(isRetryable(a)).toBe(false);
    let chain: unknown = codeError('ECONNRESET');
    for (let i = 0; i < 50; i++) chain = new Error(`level ${i}`, { cause: chain });
    expect(isRetryable(chain)).toBe(false);
  });

  it('retries an undici "fetch failed" TypeError whose cause is a socket error', () => {
    const socket = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
    expect(isRetryable(new TypeError('fetch failed', { cause: socket }))).toBe(true);
    expect(isRetryable(new TypeError('fetch failed'))).toBe(false);
  });

  it('retries a real fetch to a closed port (fetch failed, cause ECONNREFUSED)', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const error = await fetch(`http://127.0.0.1:${port}/`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe('fetch failed');
    expect(isRetryable(error)).toBe(true);
  });

  it('treats AggregateError as retryable when a member is and none refuses', () => {
    const refused = new AggregateError([codeError('ECONNREFUSED'), codeError('ECONNREFUSED')]);
    expect(isRetryable(refused)).toBe(true);
    expect(isRetryable(new AggregateError([codeError('ECONNRESET'), statusError(400)]))).toBe(
      false,
    );
    expect(isRetryable(new AggregateError([new Error('x')]))).toBe(false);
  });

  it('consults the extra classifier first on every link; undefined defers', () => {
    class PaymentDeclined extends Error {}
    const extra = (e: unknown) => (e instanceof PaymentDeclined ? false : undefined);
    expect(isRetryable(new PaymentDeclined('no'), extra)).toBe(false);
    expect(isRetryable(codeError('ECONNRESET'), extra)).toBe(true);
    const custom = (e: unknown) => ((e as Error).message === 'flaky' ? true : undefined);
    expect(isRetryable(new Error('wrap', { cause: new Error('flaky') }), custom)).toBe(true);
    expect(isRetryable(statusError(503), () => false)).toBe(false);
  });

  it('defaultClassifier answers undefined when it has no opinion on the error itself', () => {
    expect(defaultClassifier(new Error('x'))).toBeUndefined();
    expect(defaultClassifier(codeError('ECONNRESET'))).toBe(true);
    expect(defaultClassifier(statusError(404))).toBe(false);
  });
});

describe('isTimeoutError', () => {
  it('recognises timeouts, also in causes', () => {
    expect(isTimeoutError(new AttemptTimeoutError(5))).toBe(true);
    expect(isTimeoutError(codeError('ETIMEDOUT'))).toBe(true);
    expect(isTimeoutError(new Error('x', { cause: codeError('UND_ERR_HEADERS_TIMEOUT') }))).toBe(
      true,
    );
    expect(isTimeoutError(codeError('ECONNRESET'))).toBe(false);
    expect(isTimeoutError(undefined)).toBe(false);
  });
});

describe('retryAfterMs', () => {
  const now = Date.UTC(2025, 0, 1, 12, 0, 0);

  it('reads retryAfterMs and retryAfter (seconds) fields', () => {
    expect(retryAfterMs({ retryAfterMs: 1500 }, now)).toBe(1500);
    expect(retryAfterMs({ retryAfter: 2 }, now)).toBe(2000);
    expect(retryAfterMs({ retryAfter: '3' }, now)).toBe(3000);
    expect(retryAfterMs(new IdempotencyInProgressError(750), now)).toBe(750);
  });

  it('reads a Retry-After header in seconds from plain headers, case-insensitively', () => {
    expect(retryAfterMs({ headers: { 'Retry-After': '7' } }, now)).toBe(7000);
    expect(retryAfterMs({ headers: { 'retry-after': ['4'] } }, now)).toBe(4000);
  });

  it('reads an HTTP date relative to now; a past date is 0', () => {
    const in30s = new Date(now + 30_000).toUTCString();
    expect(retryAfterMs({ headers: { 'retry-after': in30s } }, now)).toBe(30_000);
    const past = new Date(now - 5_000).toUTCString();
    expect(retryAfterMs({ headers: { 'retry-after': past } }, now)).toBe(0);
  });

  it('reads a fetch Response, an error.response and an AWS $response', () => {
    const response = new Response(null, { status: 429, headers: { 'Retry-After': '2' } });
    expect(retryAfterMs(response, now)).toBe(2000);
    expect(retryAfterMs(Object.assign(new Error('x'), { response }), now)).toBe(2000);
    const aws = Object.assign(new Error('x'), { $response: { headers: { 'retry-after': '9' } } });
    expect(retryAfterMs(aws, now)).toBe(9000);
  });

  it('prefers retry-after-ms when present', () => {
    expect(retryAfterMs({ headers: { 'retry-after-ms': '250', 'retry-after': '5' } }, now)).toBe(
      250,
    );
  });

  it('walks the cause chain', () => {
    const inner = { headers: { 'retry-after': '1' } };
    expect(retryAfterMs(new Error('outer', { cause: inner }), now)).toBe(1000);
  });

  it('is undefined without a hint or with a malformed one', () => {
    expect(retryAfterMs(new Error('x'), now)).toBeUndefined();
    expect(retryAfterMs({ headers: { 'retry-after': 'soon' } }, now)).toBeUndefined();
    expect(retryAfterMs({ retryAfter: -1 }, now)).toBeUndefined();
    expect(retryAfterMs(42, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
  });

  it('reads only delay-seconds and HTTP-dates: other text is no hint, not a date long past', () => {
    for (const text of ['-1', '1.', '12 30', 'soon', '2026-01-01', 'Mond', '5, x']) {
      expect(parseRetryAfter(text, now), text).toBeUndefined();
    }
  });

  it('takes the first delay of a header sent twice (fetch joins them with commas)', () => {
    const headers = new Headers();
    headers.append('retry-after', '5');
    headers.append('retry-after', '5');
    expect(headers.get('retry-after')).toBe('5, 5');
    expect(retryAfterMs({ headers }, now)).toBe(5000);
    expect(parseRetryAfter('7,3', now)).toBe(7000);
  });

  it('reads the three HTTP-date forms', () => {
    const at = Date.UTC(1994, 10, 6, 8, 49, 37);
    for (const text of [
      'Sun, 06 Nov 1994 08:49:37 GMT',
      'Sunday, 06-Nov-94 08:49:37 GMT',
      'Sun Nov  6 08:49:37 1994',
    ]) {
      expect(parseRetryAfter(text, at - 3000), text).toBe(3000);
    }
  });
});
