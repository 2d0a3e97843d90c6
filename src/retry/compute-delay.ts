import { InvalidArgumentError } from '../errors.js';
import type { Random } from '../random.js';
import { type BackoffState, initialBackoffState, nextDelay } from './backoff.js';
import { resolveRetryOptions } from './resolve-options.js';
import type { RetryOptions } from './types.js';

/**
 * The delay in ms before attempt `retryIndex + 2` under `options` (retryIndex 0 is the delay
 * after the first failure), for consumers that redeliver through a broker (a JetStream
 * `nak(delay)`, an SQS visibility timeout) instead of sleeping in a loop. Decorrelated
 * jitter depends on the previous delay, so its sequence is walked from the start with
 * `random` (default: the policy's `random`, else `Math.random`). Retry-After hints are
 * not applied here: see {@link retryAfterMs}.
 */
export function computeDelay(options: RetryOptions, retryIndex: number, random?: Random): number {
  if (!Number.isInteger(retryIndex) || retryIndex < 0) {
    throw new InvalidArgumentError(`retryIndex must be an integer >= 0, got ${String(retryIndex)}`);
  }
  if (random !== undefined && typeof random !== 'function') {
    throw new InvalidArgumentError(
      `random must be a function () => number in [0, 1), got ${typeof random}`,
    );
  }
  const policy = resolveRetryOptions(options);
  const draw = random ?? policy.random;
  const backoff = policy.backoff;
  if (backoff.jitter !== 'decorrelated') {
    const state: BackoffState = { n: retryIndex, prev: backoff.base };
    return finite(nextDelay(backoff, state, draw)[0]);
  }
  let state = initialBackoffState(backoff);
  let delay = 0;
  for (let i = 0; i <= retryIndex; i++) {
    [delay, state] = nextDelay(backoff, state, draw);
  }
  return finite(delay);
}

// `0 * factor^n` is NaN once factor^n overflows to Infinity (base 0, thousands of retries).
function finite(delay: number): number {
  return Number.isNaN(delay) ? 0 : delay;
}
