import { randomUUID } from 'node:crypto';
import { type Clock, elapsedOn, systemClock } from '../clock.js';
import { type Duration, toMs } from '../duration.js';
import { AbortedError, DeadlineExceededError, InvalidArgumentError } from '../errors.js';
import type { Random } from '../random.js';
import { observe } from '../observe.js';
import { profiles } from '../retry/profiles.js';
import { retry } from '../retry/retry.js';
import { combineSignals } from '../retry/retry-policy.js';
import type { RetryOptions } from '../retry/types.js';
import { bodyInit, concat } from './body.js';
import { IDEMPOTENCY_KEY_HEADER, MAX_HEADER_KEY_LENGTH } from './key-header.js';
import { REPLAYED_HEADER } from './stored-response.js';

/** A `fetch`: the global one, undici's, or a test double. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** `RequestInit` plus what `retryingFetch` takes per call. */
export interface RetryingRequestInit extends RequestInit {
  /** The key of this logical operation (default: the `Idempotency-Key` header, else a new UUID). */
  idempotencyKey?: string;
  /** The latency budget of this call: no retry starts a wait that ends past it. */
  deadline?: Duration;
}

/** Options of {@link createRetryingFetch}. */
export interface RetryingFetchOptions {
  /** The `fetch` that sends each attempt (default: the global `fetch`). */
  fetch?: FetchLike;
  /**
   * Retry policy, over `profiles.sync` (3 attempts, 50ms..500ms full jitter, 1s per attempt,
   * 2s deadline). Unless you set `cap`, it is raised to the deadline, so a server's
   * Retry-After is honoured whenever it fits the latency budget. Unless you set
   * `attemptTimeout`, an attempt may take half the deadline (at least the profile's 1s), so a
   * larger budget also lets a slow answer arrive instead of cutting every attempt at 1s.
   */
  retry?: RetryOptions<Response>;
  /** The latency budget (default: the policy's deadline, 2s for `profiles.sync`). */
  deadline?: Duration;
  clock?: Clock;
  random?: Random;
  /** Makes the key of a new logical operation (default: `crypto.randomUUID`). */
  generateKey?: () => string;
  /**
   * Methods that get an Idempotency-Key (default: all but GET, HEAD, OPTIONS and TRACE,
   * which are safe to repeat without one).
   */
  keyMethods?: readonly string[];
  /**
   * Which responses are retried (default: 408, 409, 429, 500, 502, 503 and 504, but never a
   * replay). A 409 is "in progress": the server is still running the first attempt, so wait
   * and ask again.
   */
  retryOn?: (response: Response) => boolean;
}

const RETRY_STATUS: ReadonlySet<number> = new Set([408, 409, 429, 500, 502, 503, 504]);
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * The default rule: 408, 409, 429, 500, 502, 503, 504, unless the response is a replay
 * (`Idempotent-Replayed: true`): a stored outcome, such as the handler's own 409, comes back
 * the same on every attempt.
 */
export function isRetryableResponse(response: Response): boolean {
  return (
    RETRY_STATUS.has(response.status) &&
    response.headers.get(REPLAYED_HEADER)?.toLowerCase() !== 'true'
  );
}

/**
 * Makes a `fetch` that retries the way a waiting caller needs: one Idempotency-Key per
 * logical operation, the same key on every attempt (so the server runs the operation once),
 * the sync profile inside a latency budget, the server's Retry-After honoured, a 409 waited
 * out and asked again, network failures, 408, 429 and 5xx (500, 502-504) retried, 422 and
 * every other 4xx returned at once. The request body is buffered once (streams included) and
 * sent again on each attempt. An aborted `signal` stops at once, with the signal's reason.
 *
 * When retries run out on a response, that last response is returned (as `fetch` would);
 * when they run out on a network error, the retry error is thrown (`RetryExhaustedError` or
 * `DeadlineExceededError`, the network error as `cause`).
 *
 * @example
 * const pay = createRetryingFetch({ deadline: '3s' });
 * const res = await pay('https://api.example/payments', { method: 'POST', body: JSON.stringify(p) });
 */
export function createRetryingFetch(
  options: RetryingFetchOptions = {},
): (input: string | URL | Request, init?: RetryingRequestInit) => Promise<Response> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('createRetryingFetch: options must be an object');
  }
  const fetchImpl: FetchLike | undefined = options.fetch ?? globalThis.fetch?.bind(globalThis);
  if (typeof fetchImpl !== 'function') {
    throw new InvalidArgumentError('createRetryingFetch: no fetch; pass options.fetch');
  }
  const generateKey = options.generateKey ?? randomUUID;
  const keyMethods =
    options.keyMethods === undefined
      ? undefined
      : new Set(options.keyMethods.map((m) => m.toUpperCase()));
  const retryOn = options.retryOn ?? isRetryableResponse;
  const base: RetryOptions<Response> = { ...profiles.sync, ...options.retry };
  if (options.deadline !== undefined) base.deadline = options.deadline;
  if (options.clock !== undefined) base.clock = options.clock;
  if (options.random !== undefined) base.random = options.random;
  const userCap = options.retry?.cap;
  const userAttemptTimeout = options.retry?.attemptTimeout;
  const userOnRetry = base.onRetry;

  return async function retryingFetch(input, init = {}) {
    const { idempotencyKey, deadline, ...rest } = init;
    const request = new Request(input, rest);
    // The caller's signal: the init's, else the one of the Request passed in.
    const signal = init.signal ?? (input instanceof Request ? input.signal : undefined);
    const method = request.method;
    const headers = new Headers(request.headers);
    const needsKey = keyMethods ? keyMethods.has(method) : !SAFE_METHODS.has(method);
    if (needsKey && !headers.has(IDEMPOTENCY_KEY_HEADER)) {
      const key = idempotencyKey ?? generateKey();
      if (typeof key !== 'string' || key.length === 0 || key.length > MAX_HEADER_KEY_LENGTH) {
        throw new InvalidArgumentError(
          `retryingFetch: the idempotency key must be 1 to ${MAX_HEADER_KEY_LENGTH} characters`,
        );
      }
      headers.set(IDEMPOTENCY_KEY_HEADER, key);
    }
    // The policy's own signal (a shutdown) and the call's both stop it.
    const both = combineSignals(base.signal, signal);
    const clock = base.clock ?? systemClock;
    const startedAt = elapsedOn(clock);
    const budgetMs =
      (deadline ?? base.deadline) === undefined
        ? undefined
        : toMs((deadline ?? base.deadline) as Duration, 'deadline');
    let body: Uint8Array | undefined;
    try {
      // Read once, inside the budget and the signals; every attempt sends the same bytes.
      body =
        request.body === null
          ? undefined
          : await readWhole(request.body, both.signal, budgetMs, clock);
    } catch (error) {
      both.release?.();
      throw error;
    }

    // A response retried past is never read, and its body is cancelled to free the connection,
    // but only once the next attempt starts: a retry that gives up after its sleep (the
    // deadline reached meanwhile) returns this very response, which must still be readable.
    let superseded: Response | undefined;
    const discard = (): void => {
      void superseded?.body?.cancel().catch(() => undefined);
      superseded = undefined;
    };
    const policy: RetryOptions<Response> = {
      ...base,
      retryOnResult: retryOn,
      onRetry(event) {
        if (event.error instanceof Response) superseded = event.error;
        observe(userOnRetry, event);
      },
    };
    if (budgetMs !== undefined) {
      // What the body's reading took comes out of the budget.
      const budget = Math.max(1, budgetMs - (elapsedOn(clock) - startedAt));
      policy.deadline = budget;
      if (userCap === undefined) policy.cap = Math.max(toMs(policy.cap ?? 0, 'retry.cap'), budget);
      // The profile's 1s per attempt fits its own 2s budget; a caller who allows more time
      // wants a slow answer to arrive, not three attempts cut at 1s (each one more load on
      // the slow server, and a POST then meets its own first attempt, still running, as 409).
      if (userAttemptTimeout === undefined && policy.attemptTimeout !== undefined) {
        policy.attemptTimeout = Math.max(
          toMs(policy.attemptTimeout, 'retry.attemptTimeout'),
          budget / 2,
        );
      }
    }
    if (both.signal) policy.signal = both.signal;

    try {
      const response = await retry(({ signal: attemptSignal }) => {
        discard();
        const attemptInit: RequestInit = {
          ...rest,
          method,
          headers,
          redirect: request.redirect,
          signal: attemptSignal,
        };
        if (body !== undefined) attemptInit.body = bodyInit(body);
        return fetchImpl(request.url, attemptInit);
      }, policy);
      if (superseded !== response) discard();
      return response;
    } catch (error) {
      discard();
      if (error instanceof AbortedError) {
        // Stopped by a signal: its own reason, as fetch gives it.
        if (signal?.aborted) throw signal.reason;
        if (base.signal?.aborted) throw base.signal.reason;
      }
      throw error;
    } finally {
      both.release?.();
    }
  };
}

/**
 * The whole of a request body, read within the caller's signal and the deadline (a stream
 * that stalls must not hold the call past either, as it would not hold fetch): when either
 * ends first, the stream is cancelled and the read rejects with the signal's reason or a
 * DeadlineExceededError.
 */
async function readWhole(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
  budgetMs: number | undefined,
  clock: Clock,
): Promise<Uint8Array> {
  if (signal?.aborted) throw signal.reason;
  const reader = stream.getReader();
  let stop: (reason: unknown) => void = () => {};
  const stopped = new Promise<never>((_, reject) => {
    stop = reject;
  });
  const onAbort = () => stop(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const cancelTimer =
    budgetMs === undefined
      ? undefined
      : clock.setTimer(budgetMs, () =>
          stop(
            new DeadlineExceededError(
              0,
              undefined,
              `deadline exceeded while reading the request body (${budgetMs} ms)`,
            ),
          ),
        );
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), stopped]);
      if (done) break;
      chunks.push(value);
      total += value.byteLength;
    }
    return concat(chunks, total);
  } catch (error) {
    void reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    cancelTimer?.();
  }
}

/** {@link createRetryingFetch} with the defaults: the global `fetch` and `profiles.sync`. */
export const retryingFetch: (
  input: string | URL | Request,
  init?: RetryingRequestInit,
) => Promise<Response> = (input, init) => defaultFetch()(input, init);

let shared: ReturnType<typeof createRetryingFetch> | undefined;
function defaultFetch(): ReturnType<typeof createRetryingFetch> {
  shared ??= createRetryingFetch();
  return shared;
}
