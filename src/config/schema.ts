import { z } from 'zod';
import { type Duration, isDurationString, toMs } from '../duration.js';
import { MAX_RECORD_DURATION_MS } from '../idempotency/options.js';
import { MAX_TIMER_MS } from '../retry/resolve-options.js';
import { STORE_FORMS, tryParseStoreSpec } from './store-spec.js';

/*
 * The config file of DESIGN.md ("Config file"), as zod schemas. Every leaf carries its own
 * message (what is allowed), so that a ConfigError reads as a list of fixes, never as zod's
 * vocabulary. Objects are strict: a misspelt field is an error, not silently ignored.
 */

export const BACKOFF_VALUES = ['constant', 'linear', 'exponential'] as const;
export const JITTER_VALUES = ['none', 'full', 'equal', 'decorrelated'] as const;
export const PROFILE_VALUES = ['sync', 'async'] as const;
export const ON_DUPLICATE_VALUES = ['return_previous_result', 'reject'] as const;
export const ON_IN_PROGRESS_VALUES = ['reject', 'wait'] as const;
export const BUDGET_TYPES = ['token_bucket', 'ratio'] as const;

const DURATION_FORMS = 'milliseconds (a number) or a string such as 250ms, 30s, 5m, 24h';

function isDuration(value: unknown): value is Duration {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0;
  return typeof value === 'string' && isDurationString(value);
}

function durationMs(value: Duration): number {
  return toMs(value);
}

const positiveDuration = z.custom<Duration>((v) => isDuration(v) && durationMs(v) > 0, {
  error: `must be a duration greater than 0: ${DURATION_FORMS}`,
});
/** A ratio budget's window: at least 10 ms, what createRatioBudget accepts. */
const ratioWindow = z.custom<Duration>((v) => isDuration(v) && durationMs(v) >= 10, {
  error: `must be a duration of at least 10ms: ${DURATION_FORMS}`,
});
/** How long a record is kept: more than 0, at most 100 years (what idempotent() accepts). */
const recordDuration = z.custom<Duration>(
  (v) => isDuration(v) && durationMs(v) > 0 && durationMs(v) <= MAX_RECORD_DURATION_MS,
  { error: `must be a duration greater than 0 and at most 100 years: ${DURATION_FORMS}` },
);
const HOURS =
  'must be a number of hours > 0 and at most 876000 (100 years), or a duration such as 30m or 24h';
/** {@link recordDuration} written as text (`24h`). */
const recordDurationText = z.custom<Duration>(
  (v) =>
    typeof v === 'string' &&
    isDuration(v) &&
    durationMs(v) > 0 &&
    durationMs(v) <= MAX_RECORD_DURATION_MS,
);
/** A delay or timeout that a timer can wait for (setTimeout's limit, about 24.8 days). */
const timerDuration = (positive: boolean) =>
  z.custom<Duration>(
    (v) => isDuration(v) && durationMs(v) <= MAX_TIMER_MS && (!positive || durationMs(v) > 0),
    {
      error: `must be a duration${positive ? ' greater than 0' : ''} of at most 24 days: ${DURATION_FORMS}`,
    },
  );

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `must be one of ${values.join(', ')}` });
}

function integer(min: number) {
  return z
    .number({ error: `must be a whole number >= ${min}` })
    .int({ error: `must be a whole number >= ${min}` })
    .min(min, { error: `must be a whole number >= ${min}` });
}

function number(min: number, exclusive = false) {
  const text = `must be a number ${exclusive ? '>' : '>='} ${min}`;
  const n = z.number({ error: text });
  return exclusive ? n.gt(min, { error: text }) : n.min(min, { error: text });
}

const mapping = (what: string) => ({ error: `must be a mapping of ${what}` });

/** A field path as `idempotent()` reads one: names joined by dots, none empty (`body.id`). */
function isFieldPath(v: unknown): v is string {
  return typeof v === 'string' && v.trim() !== '' && v.split('.').every((s) => s.length > 0);
}

const fieldPath = z.custom<string>(isFieldPath, {
  error: 'must be a field path such as requestId or body.id',
});

const fingerprint = z.custom<boolean | string | string[]>(
  (v) =>
    typeof v === 'boolean' ||
    isFieldPath(v) ||
    (Array.isArray(v) && v.length > 0 && v.every(isFieldPath)),
  {
    error:
      'must be false (no check), true (the whole input), a field path such as body, or a list of field paths',
  },
);

const heartbeat = z.custom<boolean | Duration>(
  (v) => typeof v === 'boolean' || (isDuration(v) && durationMs(v) > 0),
  { error: `must be true, false, or an interval: ${DURATION_FORMS}` },
);

const store = z.custom<string>((v) => tryParseStoreSpec(v) !== undefined, {
  error: `must be ${STORE_FORMS}`,
});

export const idempotencySchema = z.strictObject(
  {
    key_source: fieldPath,
    scope: z.string({ error: 'must be an operation name' }).min(1, {
      error: 'must be an operation name',
    }),
    store: store,
    // Hours as a number; a duration as well (`24h`), since the design's sample writes the
    // TTL here and says durations are accepted.
    // (A number is hours, never the milliseconds a duration number would be.)
    ttl_hours: z.union(
      [
        z
          .number({ error: HOURS })
          .gt(0, { error: HOURS })
          .max(MAX_RECORD_DURATION_MS / 3_600_000, { error: HOURS }),
        recordDurationText,
      ],
      { error: HOURS },
    ),
    ttl: recordDuration,
    lease: timerDuration(true),
    heartbeat: heartbeat,
    on_duplicate: oneOf(ON_DUPLICATE_VALUES),
    on_in_progress: oneOf(ON_IN_PROGRESS_VALUES),
    in_progress_wait: timerDuration(true),
    fingerprint: fingerprint,
    remember_failures: z.boolean({ error: 'must be true or false' }),
    max_result_bytes: integer(1),
    max_steps: integer(1),
    max_steps_bytes: integer(1),
  },
  mapping('idempotency settings'),
);

const budgetSchema = z.strictObject(
  {
    type: oneOf(BUDGET_TYPES),
    capacity: number(0),
    retry_cost: number(0, true),
    timeout_retry_cost: number(0, true),
    success_refund: number(0),
    ratio: number(0),
    min_retries_per_second: number(0),
    window: ratioWindow,
  },
  mapping('budget settings'),
);

export const retryPolicySchema = z.strictObject(
  {
    profile: oneOf(PROFILE_VALUES),
    max_attempts: integer(1),
    backoff: oneOf(BACKOFF_VALUES),
    base: timerDuration(false),
    initial_delay: timerDuration(false),
    factor: number(1),
    cap: timerDuration(false),
    max_delay: timerDuration(false),
    jitter: oneOf(JITTER_VALUES),
    deadline: positiveDuration,
    attempt_timeout: timerDuration(true),
    budget: budgetSchema.partial({
      capacity: true,
      retry_cost: true,
      timeout_retry_cost: true,
      success_refund: true,
      ratio: true,
      min_retries_per_second: true,
      window: true,
    }),
  },
  mapping('retry policy settings'),
);

export const configSchema = z.strictObject(
  {
    idempotency: idempotencySchema.partial().optional(),
    retry_policy: retryPolicySchema.partial().optional(),
  },
  mapping('idempotency and retry_policy'),
);

/** Fields allowed in each mapping, by dotted path, for "unknown field" messages. */
export const ALLOWED_FIELDS: Readonly<Record<string, readonly string[]>> = {
  '': Object.keys(configSchema.shape),
  idempotency: Object.keys(idempotencySchema.shape),
  retry_policy: Object.keys(retryPolicySchema.shape),
  'retry_policy.budget': Object.keys(budgetSchema.shape),
};

/** Budget fields that only apply to one budget type. */
export const BUDGET_FIELDS: Readonly<Record<(typeof BUDGET_TYPES)[number], readonly string[]>> = {
  token_bucket: ['capacity', 'retry_cost', 'timeout_retry_cost', 'success_refund'],
  ratio: ['ratio', 'min_retries_per_second', 'window'],
};
