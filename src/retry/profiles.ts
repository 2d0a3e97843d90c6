import type { RetryOptions } from './types.js';

/**
 * For a caller who is waiting (an HTTP request, an API Gateway handler): the retries must
 * fit the caller's latency budget. 3 attempts, exponential from 50ms (factor 2) capped at
 * 500ms, full jitter, each attempt at most 1s, and a 2s deadline for the whole call (no
 * sleep that would end past it starts). Override `deadline` with your own latency budget.
 */
const sync: Readonly<RetryOptions> = Object.freeze({
  maxAttempts: 3,
  backoff: 'exponential',
  base: '50ms',
  factor: 2,
  cap: '500ms',
  jitter: 'full',
  attemptTimeout: '1s',
  deadline: '2s',
} satisfies RetryOptions);

/**
 * For work nobody waits on (a queue consumer, a background job): patient retries that give
 * a sick dependency minutes to recover, then quarantine. 10 attempts, exponential from 2s
 * (factor 2) capped at 5 minutes, full jitter; no overall deadline and no attempt timeout
 * (the attempts bound it). The 9 delays are at most 2s, 4s, ... 256s, 300s: 13.5 minutes
 * in total at worst, about 6.75 minutes on average. Consumers that redeliver through a
 * broker use `computeDelay(profiles.async, n)`.
 */
const async: Readonly<RetryOptions> = Object.freeze({
  maxAttempts: 10,
  backoff: 'exponential',
  base: '2s',
  factor: 2,
  cap: '5m',
  jitter: 'full',
} satisfies RetryOptions);

/**
 * The two retry profiles. Treating the synchronous and the asynchronous path the same is
 * the anti-pattern: a waiting caller needs few, fast retries inside a deadline; a queue
 * consumer needs many, slow ones. Spread a profile and override what you need:
 * `{ ...profiles.sync, deadline: '800ms' }`.
 */
export const profiles: Readonly<{ sync: Readonly<RetryOptions>; async: Readonly<RetryOptions> }> =
  Object.freeze({ sync, async });
