import { InvalidArgumentError } from '../errors.js';
import { isTimeoutError } from './classify.js';
import type { RetryBudget } from './types.js';

/** Options of {@link createTokenBucketBudget}; the defaults are the AWS SDK's standard mode. */
export interface TokenBucketBudgetOptions {
  /** Tokens when full, and at the start (default 500). */
  capacity?: number;
  /** Tokens a retry costs (default 5). */
  retryCost?: number;
  /** Tokens a retry after a timeout costs (default 10). */
  timeoutRetryCost?: number;
  /** Tokens a success puts back, up to `capacity` (default 1). */
  successRefund?: number;
}

/** A token-bucket {@link RetryBudget}; `tokens` is exposed for tests and dashboards. */
export interface TokenBucketBudget extends RetryBudget {
  readonly capacity: number;
  /** Tokens left now. */
  readonly tokens: number;
}

/**
 * A retry budget shared by every call to one dependency. Retries spend tokens (more after a
 * timeout), successes earn a few back. When the bucket cannot pay, no retry happens and the
 * error is returned at once; first attempts are never blocked. So while a dependency is
 * down, a fleet of callers stops multiplying its load: after `capacity / retryCost` retries
 * (100 by default) only first attempts go out, until successes refill the bucket.
 * The balance never goes negative.
 *
 * @example
 * const dynamoBudget = createTokenBucketBudget(); // capacity 500, retry 5, timeout 10, refund 1
 * await retry(() => putItem(item), { ...profiles.sync, budget: dynamoBudget });
 */
export function createTokenBucketBudget(options: TokenBucketBudgetOptions = {}): TokenBucketBudget {
  const capacity = nonNegative(options.capacity ?? 500, 'capacity');
  const retryCost = positive(options.retryCost ?? 5, 'retryCost');
  const timeoutRetryCost = positive(options.timeoutRetryCost ?? 10, 'timeoutRetryCost');
  const successRefund = nonNegative(options.successRefund ?? 1, 'successRefund');
  let tokens = capacity;
  return {
    capacity,
    get tokens() {
      return tokens;
    },
    onRequest() {},
    tryAcquireRetry(cause) {
      const cost = isTimeoutError(cause) ? timeoutRetryCost : retryCost;
      if (tokens < cost) return false;
      tokens -= cost;
      return true;
    },
    refundRetry(cause) {
      const cost = isTimeoutError(cause) ? timeoutRetryCost : retryCost;
      tokens = Math.min(capacity, tokens + cost);
    },
    onSuccess() {
      tokens = Math.min(capacity, tokens + successRefund);
    },
    remaining: () => tokens,
  };
}

function nonNegative(value: number, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`${field} must be a finite number >= 0, got ${String(value)}`);
  }
  return value;
}

function positive(value: number, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`${field} must be a finite number > 0, got ${String(value)}`);
  }
  return value;
}
