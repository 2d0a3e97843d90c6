import { type Clock, systemClock } from '../clock.js';
import { toMs } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { optionNames } from '../option-names.js';
import { isRetryable } from '../retry/classify.js';
import { defaultCodec } from './codec.js';
import type { Classifier } from '../retry/types.js';
import type { IdempotencyStore } from './store.js';
import type { Codec, DuplicatePolicy, ExecuteOptions, IdempotencyBaseOptions } from './types.js';

/** Default time a completed or failed record is kept: 24 hours. */
export const DEFAULT_TTL_MS = 24 * 60 * 60 * 1000;
/** Default lease of an in-progress claim: 30 seconds. */
export const DEFAULT_LEASE_MS = 30_000;
/** Default bound on an encoded result or step result: 256 KiB. */
export const DEFAULT_MAX_RESULT_BYTES = 256 * 1024;
/**
 * The longest `ttl` or `lease`: 100 years. Records keep times as whole epoch milliseconds;
 * far past this the expiry is no longer a safe integer and every store would refuse to read
 * the record back.
 */
export const MAX_RECORD_DURATION_MS = 100 * 365 * 24 * 60 * 60 * 1000;
/** Default bound on the number of stored steps of one operation. */
export const DEFAULT_MAX_STEPS = 1000;
/** Default bound on all step results of one operation together, as a multiple of maxResultBytes. */
export const DEFAULT_STEPS_BYTES_FACTOR = 16;

/** {@link ExecuteOptions} checked once and turned into numbers. */
export interface ResolvedOptions<O> {
  store: IdempotencyStore;
  ttlMs: number;
  leaseMs: number;
  /** Heartbeat interval; 0 when heartbeats are off. */
  heartbeatMs: number;
  onDuplicate: DuplicatePolicy;
  inProgress: { kind: 'reject' } | { kind: 'wait'; waitMs: number; pollMs: number };
  /** Whether a non-retryable failure is stored and replayed. */
  remember: (error: unknown) => boolean;
  /** Extra classification before the default one (undefined: the default alone). */
  classify: Classifier | undefined;
  codec: Codec;
  maxResultBytes: number;
  /** Stored steps one operation may have. */
  maxSteps: number;
  /** UTF-8 bytes all stored step results of one operation may take together. */
  maxStepsBytes: number;
  clock: Clock;
  shouldStore: ((value: O) => boolean) | undefined;
  /**
   * Where the run must end, on the clock's elapsed timeline (`elapsedOn`), when a runtime
   * says so (a Lambda invocation's remaining time): heartbeats never renew the lease past it.
   */
  leaseDeadline?: number;
  /**
   * Steps a runtime keeps for its own bookkeeping (the consumer's first failure time and
   * pending quarantine): small and bounded by the runtime, they count against neither
   * maxSteps nor maxStepsBytes, which are the user's steps.
   */
  uncountedSteps?: ReadonlySet<string>;
}

const STORE_METHODS = [
  'begin',
  'complete',
  'fail',
  'release',
  'heartbeat',
  'saveStep',
  'get',
  'delete',
  'list',
  'purgeExpired',
] as const;

/** The options every idempotency front takes (see {@link IdempotencyBaseOptions}). */
export const BASE_OPTIONS = {
  store: true,
  ttl: true,
  lease: true,
  heartbeat: true,
  onDuplicate: true,
  onInProgress: true,
  rememberFailures: true,
  classify: true,
  codec: true,
  maxResultBytes: true,
  maxSteps: true,
  maxStepsBytes: true,
  clock: true,
} as const satisfies Record<keyof IdempotencyBaseOptions, true>;

/** The option names of {@link executeIdempotent}. */
export const EXECUTE_OPTIONS = optionNames<ExecuteOptions<unknown>>({
  ...BASE_OPTIONS,
  shouldStore: true,
});

/** Validates `options` (each problem an {@link InvalidArgumentError} naming the field) and applies defaults. */
export function resolveOptions<O>(options: ExecuteOptions<O>): ResolvedOptions<O> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('idempotency options must be an object with at least a store');
  }
  const store = options.store as unknown;
  if (typeof store !== 'object' || store === null) {
    throw new InvalidArgumentError('idempotency option "store" is required (an IdempotencyStore)');
  }
  for (const method of STORE_METHODS) {
    if (typeof (store as Record<string, unknown>)[method] !== 'function') {
      throw new InvalidArgumentError(
        `idempotency option "store" is not an IdempotencyStore: it has no ${method}() method`,
      );
    }
  }

  const ttlMs = positiveDuration(options.ttl, DEFAULT_TTL_MS, 'ttl');
  const leaseMs = positiveDuration(options.lease, DEFAULT_LEASE_MS, 'lease');

  let heartbeatMs: number;
  const heartbeat = options.heartbeat;
  if (heartbeat === undefined || heartbeat === true) {
    // A third of the lease; none for a lease too short to beat within (under 2 ms).
    heartbeatMs = leaseMs < 2 ? 0 : Math.max(1, Math.floor(leaseMs / 3));
  } else if (heartbeat === false) {
    heartbeatMs = 0;
  } else {
    heartbeatMs = positiveDuration(heartbeat, 0, 'heartbeat');
    if (heartbeatMs >= leaseMs) {
      throw new InvalidArgumentError(
        `heartbeat (${heartbeatMs} ms) must be shorter than the lease (${leaseMs} ms), or the lease ends between beats`,
      );
    }
  }

  const onDuplicate = options.onDuplicate ?? 'return_previous_result';
  if (onDuplicate !== 'return_previous_result' && onDuplicate !== 'reject') {
    throw new InvalidArgumentError(
      `onDuplicate must be "return_previous_result" or "reject", got ${JSON.stringify(onDuplicate)}`,
    );
  }

  let inProgress: ResolvedOptions<O>['inProgress'];
  const onInProgress = options.onInProgress ?? 'reject';
  if (onInProgress === 'reject') {
    inProgress = { kind: 'reject' };
  } else if (typeof onInProgress === 'object' && onInProgress !== null && 'wait' in onInProgress) {
    const waitMs = toMs(onInProgress.wait, 'onInProgress.wait');
    const pollMs =
      onInProgress.poll === undefined
        ? Math.min(1000, Math.max(10, Math.floor(leaseMs / 10)))
        : positiveDuration(onInProgress.poll, 0, 'onInProgress.poll');
    inProgress = { kind: 'wait', waitMs, pollMs };
  } else {
    throw new InvalidArgumentError(
      `onInProgress must be "reject" or { wait: <duration>, poll?: <duration> }, got ${JSON.stringify(onInProgress)}`,
    );
  }

  const rememberFailures = options.rememberFailures;
  let remember: (error: unknown) => boolean;
  if (rememberFailures === undefined || rememberFailures === true) {
    remember = () => true;
  } else if (rememberFailures === false) {
    remember = () => false;
  } else if (typeof rememberFailures === 'function') {
    remember = (error) => rememberFailures(error) === true;
  } else {
    throw new InvalidArgumentError(
      `rememberFailures must be a boolean or a function (error) => boolean, got ${typeof rememberFailures}`,
    );
  }

  const classify = options.classify;
  if (classify !== undefined && typeof classify !== 'function') {
    throw new InvalidArgumentError(
      `classify must be a function (error) => boolean | undefined, got ${typeof classify}`,
    );
  }

  const codec = options.codec ?? defaultCodec;
  if (
    typeof codec !== 'object' ||
    codec === null ||
    typeof codec.encode !== 'function' ||
    typeof codec.decode !== 'function'
  ) {
    throw new InvalidArgumentError('codec must have encode(value) and decode(text) functions');
  }

  const maxResultBytes = options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
  if (!Number.isInteger(maxResultBytes) || maxResultBytes < 1) {
    throw new InvalidArgumentError(
      `maxResultBytes must be an integer >= 1, got ${String(maxResultBytes)}`,
    );
  }

  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  if (!Number.isInteger(maxSteps) || maxSteps < 1) {
    throw new InvalidArgumentError(`maxSteps must be an integer >= 1, got ${String(maxSteps)}`);
  }
  const maxStepsBytes = options.maxStepsBytes ?? maxResultBytes * DEFAULT_STEPS_BYTES_FACTOR;
  if (!Number.isInteger(maxStepsBytes) || maxStepsBytes < 1) {
    throw new InvalidArgumentError(
      `maxStepsBytes must be an integer >= 1, got ${String(maxStepsBytes)}`,
    );
  }

  const clock = options.clock ?? systemClock;
  if (typeof clock?.now !== 'function' || typeof clock.setTimer !== 'function') {
    throw new InvalidArgumentError('clock must have now() and setTimer(ms, callback)');
  }

  const shouldStore = options.shouldStore;
  if (shouldStore !== undefined && typeof shouldStore !== 'function') {
    throw new InvalidArgumentError(`shouldStore must be a function, got ${typeof shouldStore}`);
  }

  return {
    store: store as IdempotencyStore,
    ttlMs,
    leaseMs,
    heartbeatMs,
    onDuplicate,
    inProgress,
    remember,
    classify,
    codec,
    maxResultBytes,
    maxSteps,
    maxStepsBytes,
    clock,
    shouldStore,
  };
}

/**
 * Whether a failure is remembered: never a retryable one (by `classify`, then the default
 * classifier; it releases, steps kept), and a non-retryable one when `rememberFailures` says
 * so (by default, always).
 */
export function shouldRemember(resolved: ResolvedOptions<unknown>, error: unknown): boolean {
  return !isRetryable(error, resolved.classify) && resolved.remember(error);
}

/** A duration in whole milliseconds, rounded up (stores keep times as integers). */
function positiveDuration(value: unknown, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  const ms = toMs(value as string | number, what);
  if (ms <= 0)
    throw new InvalidArgumentError(`${what} must be longer than 0, got ${String(value)}`);
  if (ms > MAX_RECORD_DURATION_MS) {
    throw new InvalidArgumentError(
      `${what} must be at most 100 years (${MAX_RECORD_DURATION_MS} ms), got ${String(value)}`,
    );
  }
  return Math.ceil(ms);
}
