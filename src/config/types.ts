import type { Duration } from '../duration.js';

/**
 * A validated config file, as written (snake_case, durations as given). Convert its parts
 * with `retryOptionsFromConfig` and `idempotencySettingsFromConfig`.
 */
export interface ReprocessConfig {
  idempotency?: IdempotencyConfig;
  retry_policy?: RetryPolicyConfig;
}

/** The `idempotency` section. */
export interface IdempotencyConfig {
  /** Where the operation identity comes from: a field path such as `requestId` or `body.id`. */
  key_source?: string;
  /** Operation name the keys are scoped by. */
  scope?: string;
  /** `key-value` (embedded SQLite, the default) or a store URL. */
  store?: string;
  /** How long a finished record is kept, in hours (default 24), or a duration (`24h`). Not with `ttl`. */
  ttl_hours?: number | Duration;
  /** The same as a duration (`24h`). Not with `ttl_hours`. */
  ttl?: Duration;
  /** How long an in-progress claim lives without heartbeat (default 30s). */
  lease?: Duration;
  /** Renew the lease while running: true (every lease/3), false, or an interval. */
  heartbeat?: boolean | Duration;
  on_duplicate?: 'return_previous_result' | 'reject';
  on_in_progress?: 'reject' | 'wait';
  /** With `on_in_progress: wait`, how long to wait (default 10s). */
  in_progress_wait?: Duration;
  /** false, true (whole input), a field path, or a list of field paths. */
  fingerprint?: boolean | string | string[];
  /** Store and replay non-retryable failures (default true). */
  remember_failures?: boolean;
  max_result_bytes?: number;
  /** Stored steps one operation may have (default 1000). */
  max_steps?: number;
  /** UTF-8 bytes of all step results of one operation together (default 16 × max_result_bytes). */
  max_steps_bytes?: number;
}

/** The `retry_policy` section. */
export interface RetryPolicyConfig {
  /** Start from `profiles.sync` or `profiles.async`; the other fields override it. */
  profile?: 'sync' | 'async';
  max_attempts?: number;
  backoff?: 'constant' | 'linear' | 'exponential';
  /** First delay. Alias: `initial_delay`. */
  base?: Duration;
  initial_delay?: Duration;
  factor?: number;
  /** Largest delay. Alias: `max_delay`. */
  cap?: Duration;
  max_delay?: Duration;
  jitter?: 'none' | 'full' | 'equal' | 'decorrelated';
  deadline?: Duration;
  attempt_timeout?: Duration;
  budget?: BudgetConfig;
}

/** A retry budget: a token bucket or a ratio of traffic. */
export interface BudgetConfig {
  type: 'token_bucket' | 'ratio';
  capacity?: number;
  retry_cost?: number;
  timeout_retry_cost?: number;
  success_refund?: number;
  ratio?: number;
  min_retries_per_second?: number;
  window?: Duration;
}
