import type { Clock } from '../clock.js';
import { toMs } from '../duration.js';
import type { DuplicatePolicy, FingerprintSource, InProgressPolicy } from '../idempotency/types.js';
import { profiles } from '../retry/profiles.js';
import { createRatioBudget } from '../retry/ratio-budget.js';
import { createTokenBucketBudget } from '../retry/token-bucket-budget.js';
import type { RetryBudget, RetryOptions } from '../retry/types.js';
import { type StoreSpec, parseStoreSpec } from './store-spec.js';
import type { BudgetConfig, IdempotencyConfig, RetryPolicyConfig } from './types.js';

/**
 * A validated `retry_policy` as {@link RetryOptions}: the `profile` (if any) with the other
 * fields over it, durations in ms, and a NEW budget when one is configured. A budget only
 * protects a dependency when every call to it shares one: convert once and reuse the result
 * (or its `createRetryPolicy`), do not convert per call. `undefined` gives `{}`.
 *
 * @example
 * const options = retryOptionsFromConfig(config.retry_policy);
 * const policy = createRetryPolicy({ ...options, name: 'payments' });
 */
export function retryOptionsFromConfig(policy: RetryPolicyConfig | undefined): RetryOptions {
  if (policy === undefined) return {};
  const options: RetryOptions = { ...(policy.profile ? profiles[policy.profile] : {}) };
  if (policy.max_attempts !== undefined) options.maxAttempts = policy.max_attempts;
  if (policy.backoff !== undefined) options.backoff = policy.backoff;
  const base = policy.base ?? policy.initial_delay;
  if (base !== undefined) options.base = toMs(base, 'retry_policy.base');
  if (policy.factor !== undefined) options.factor = policy.factor;
  const cap = policy.cap ?? policy.max_delay;
  if (cap !== undefined) options.cap = toMs(cap, 'retry_policy.cap');
  if (policy.jitter !== undefined) options.jitter = policy.jitter;
  if (policy.deadline !== undefined)
    options.deadline = toMs(policy.deadline, 'retry_policy.deadline');
  if (policy.attempt_timeout !== undefined) {
    options.attemptTimeout = toMs(policy.attempt_timeout, 'retry_policy.attempt_timeout');
  }
  if (policy.budget !== undefined) options.budget = budgetFromConfig(policy.budget);
  return options;
}

/** Creates the budget a config describes (token bucket or ratio, defaults as the factories). */
export function budgetFromConfig(budget: BudgetConfig, clock?: Clock): RetryBudget {
  if (budget.type === 'ratio') {
    return createRatioBudget({
      ...(clock === undefined ? {} : { clock }),
      ...(budget.ratio === undefined ? {} : { ratio: budget.ratio }),
      ...(budget.min_retries_per_second === undefined
        ? {}
        : { minRetriesPerSecond: budget.min_retries_per_second }),
      ...(budget.window === undefined
        ? {}
        : { windowMs: toMs(budget.window, 'retry_policy.budget.window') }),
    });
  }
  return createTokenBucketBudget({
    ...(budget.capacity === undefined ? {} : { capacity: budget.capacity }),
    ...(budget.retry_cost === undefined ? {} : { retryCost: budget.retry_cost }),
    ...(budget.timeout_retry_cost === undefined
      ? {}
      : { timeoutRetryCost: budget.timeout_retry_cost }),
    ...(budget.success_refund === undefined ? {} : { successRefund: budget.success_refund }),
  });
}

/**
 * The `idempotency` section with defaults filled, in the names of `idempotent()`'s options,
 * durations in ms. The store stays a description ({@link StoreSpec}): open it with the
 * matching subpath (`reprocess/sqlite`, `reprocess/postgres`...).
 */
export interface IdempotencySettings {
  /** The `key` option (a field path), when the config names one. */
  key: string | undefined;
  /** The operation name, when the config names one. */
  scope: string | undefined;
  store: StoreSpec;
  /** ms (default 24h). */
  ttl: number;
  /** ms (default 30s). */
  lease: number;
  heartbeat: boolean | number;
  onDuplicate: DuplicatePolicy;
  onInProgress: InProgressPolicy;
  /** Undefined: the default (the whole input). */
  fingerprint: FingerprintSource<unknown> | undefined;
  rememberFailures: boolean | undefined;
  maxResultBytes: number | undefined;
  maxSteps: number | undefined;
  maxStepsBytes: number | undefined;
}

/** Defaults of the idempotency section. */
export const IDEMPOTENCY_CONFIG_DEFAULTS = Object.freeze({
  store: 'key-value',
  ttlHours: 24,
  lease: 30_000,
  inProgressWait: 10_000,
});

/**
 * A validated `idempotency` section as {@link IdempotencySettings}.
 *
 * @example
 * const settings = idempotencySettingsFromConfig(config.idempotency);
 * if (settings.store.kind === 'postgres') store = await openPostgresStore(settings.store.url);
 */
export function idempotencySettingsFromConfig(
  config: IdempotencyConfig | undefined,
): IdempotencySettings {
  const c = config ?? {};
  const hours = c.ttl_hours ?? IDEMPOTENCY_CONFIG_DEFAULTS.ttlHours;
  const ttl =
    c.ttl !== undefined
      ? toMs(c.ttl, 'idempotency.ttl')
      : typeof hours === 'string'
        ? toMs(hours, 'idempotency.ttl_hours')
        : // Whole ms (1.1 h is 3,960,000, not one more for the float's noise); a tiny
          // ttl_hours is 1 ms, never 0.
          Math.max(1, Math.round(hours * 3_600_000));
  const heartbeat =
    c.heartbeat === undefined
      ? true
      : typeof c.heartbeat === 'boolean'
        ? c.heartbeat
        : toMs(c.heartbeat, 'idempotency.heartbeat');
  const onInProgress: InProgressPolicy =
    c.on_in_progress === 'wait'
      ? {
          wait:
            c.in_progress_wait === undefined
              ? IDEMPOTENCY_CONFIG_DEFAULTS.inProgressWait
              : toMs(c.in_progress_wait, 'idempotency.in_progress_wait'),
        }
      : 'reject';
  let fingerprint: FingerprintSource<unknown> | undefined;
  if (c.fingerprint === false) fingerprint = false;
  else if (typeof c.fingerprint === 'string' || Array.isArray(c.fingerprint)) {
    fingerprint = c.fingerprint;
  }
  return {
    key: c.key_source,
    scope: c.scope,
    store: parseStoreSpec(c.store ?? IDEMPOTENCY_CONFIG_DEFAULTS.store),
    ttl,
    lease:
      c.lease === undefined
        ? IDEMPOTENCY_CONFIG_DEFAULTS.lease
        : toMs(c.lease, 'idempotency.lease'),
    heartbeat,
    onDuplicate: c.on_duplicate ?? 'return_previous_result',
    onInProgress,
    fingerprint,
    rememberFailures: c.remember_failures,
    maxResultBytes: c.max_result_bytes,
    maxSteps: c.max_steps,
    maxStepsBytes: c.max_steps_bytes,
  };
}
