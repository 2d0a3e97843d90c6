import {
  ErrorCode,
  RecordCorruptError,
  type ResultNotStorableError,
  StoreUnavailableError,
  isReprocessError,
} from '../errors.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
} from './store.js';

/*
 * The core's side of the store port. A store may throw anything when it cannot answer; the
 * core turns that into StoreUnavailableError (fail closed) and never runs the operation on a
 * guess. A store may also answer with something that is not what the contract says (a bug,
 * a record edited by hand): that is RecordCorruptError, never a crash further on.
 */

/** Calls one store method; anything it throws that is not a reprocess error becomes {@link StoreUnavailableError}. */
export async function callStore<T>(
  store: IdempotencyStore,
  method: string,
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw storeFailure(store, method, error);
  }
}

/**
 * What to throw when a store method threw `error`: a reprocess error as it is, anything else
 * as {@link StoreUnavailableError}. The hot paths (begin, complete) catch around their own
 * `await` and use this, which saves the closure and the async frame of {@link callStore}.
 */
export function storeFailure(store: IdempotencyStore, method: string, error: unknown): unknown {
  if (isReprocessError(error)) return error;
  return new StoreUnavailableError(
    `idempotency store "${store.name}" failed in ${method}(): ${describe(error)}`,
    error,
  );
}

/**
 * Whether a store refused a value it was given to keep (a result or a step result) as too
 * large or not storable, as DynamoDB's 400 KB item limit does: {@link ResultNotStorableError},
 * recognised by its codes so that a store from another copy of the package counts too. The
 * work behind that value already ran, so the caller must record the operation as failed.
 */
export function isStoreRefusal(error: unknown): error is ResultNotStorableError {
  return (
    isReprocessError(error, ErrorCode.RESULT_TOO_LARGE) ||
    isReprocessError(error, ErrorCode.RESULT_NOT_STORABLE)
  );
}

function bad(store: IdempotencyStore, method: string, what: string): never {
  throw new RecordCorruptError(`idempotency store "${store.name}" ${method}() returned ${what}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isSteps(value: unknown): value is Record<string, string> {
  if (!isObject(value)) return false;
  for (const name of Object.keys(value)) {
    if (typeof value[name] !== 'string') return false;
  }
  return true;
}

/** Checks a `begin` answer. */
export function checkBegin(store: IdempotencyStore, value: unknown): BeginResult {
  if (!isObject(value)) return bad(store, 'begin', 'no result object');
  if (value.kind === 'acquired') {
    if (!isTime(value.token)) return bad(store, 'begin', 'an acquisition without a numeric token');
    if (!isTime(value.leaseUntil)) return bad(store, 'begin', 'an acquisition without leaseUntil');
    if (!isTime(value.attempts) || value.attempts < 1) {
      return bad(store, 'begin', 'an acquisition without attempts >= 1');
    }
    if (!isSteps(value.steps)) return bad(store, 'begin', 'an acquisition with invalid steps');
    if (typeof value.takeover !== 'boolean') {
      return bad(store, 'begin', 'an acquisition without a takeover flag');
    }
    return value as BeginResult;
  }
  if (value.kind === 'existing') {
    return { kind: 'existing', record: checkRecord(store, 'begin', value.record) };
  }
  return bad(store, 'begin', `an unknown kind ${JSON.stringify(value.kind)}`);
}

/** Checks a record read from a store. `null` as `result` or `error` counts as absent. */
export function checkRecord(
  store: IdempotencyStore,
  method: string,
  value: unknown,
): IdempotencyRecord {
  if (!isObject(value)) return bad(store, method, 'a record that is not an object');
  const problem = recordProblem(value);
  if (problem !== undefined) return bad(store, method, `a corrupt record (${problem})`);
  const record = value as unknown as IdempotencyRecord;
  if (value.result === null || value.error === null) {
    const { result, error, ...rest } = record;
    return {
      ...rest,
      ...(typeof result === 'string' ? { result } : {}),
      ...(typeof error === 'string' ? { error } : {}),
    };
  }
  return record;
}

function recordProblem(r: Record<string, unknown>): string | undefined {
  if (typeof r.key !== 'string') return 'key is not a string';
  if (typeof r.fingerprint !== 'string') return 'fingerprint is not a string';
  if (r.status !== 'in_progress' && r.status !== 'completed' && r.status !== 'failed') {
    return `unknown status ${JSON.stringify(r.status)}`;
  }
  // Field by field rather than a loop over their names: a read by a computed name is several
  // times slower, and every replay checks a record.
  if (!isTime(r.token)) return 'token is not a number';
  if (!isTime(r.attempts)) return 'attempts is not a number';
  if (!isTime(r.leaseUntil)) return 'leaseUntil is not a number';
  if (!isTime(r.expiresAt)) return 'expiresAt is not a number';
  if (!isTime(r.createdAt)) return 'createdAt is not a number';
  if (!isTime(r.updatedAt)) return 'updatedAt is not a number';
  if (r.result !== undefined && r.result !== null && typeof r.result !== 'string') {
    return 'result is not a string';
  }
  if (r.error !== undefined && r.error !== null && typeof r.error !== 'string') {
    return 'error is not a string';
  }
  if (r.status === 'completed' && typeof r.result !== 'string') return 'completed without a result';
  if (r.status === 'failed' && typeof r.error !== 'string') return 'failed without an error';
  if (!isSteps(r.steps)) return 'steps is not a map of strings';
  return undefined;
}

/** Checks a `complete`, `fail`, `release` or `saveStep` answer. */
export function checkFenced(store: IdempotencyStore, method: string, value: unknown): FencedResult {
  if (isObject(value) && (value.kind === 'ok' || value.kind === 'lease_lost')) {
    return value as FencedResult;
  }
  return bad(store, method, 'neither ok nor lease_lost');
}

/** Checks a `heartbeat` answer. */
export function checkHeartbeat(store: IdempotencyStore, value: unknown): HeartbeatResult {
  if (isObject(value)) {
    if (value.kind === 'lease_lost') return { kind: 'lease_lost' };
    if (value.kind === 'ok' && isTime(value.leaseUntil)) {
      return { kind: 'ok', leaseUntil: value.leaseUntil };
    }
  }
  return bad(store, 'heartbeat', 'neither ok with leaseUntil nor lease_lost');
}

/** A short description of any thrown value, for messages. */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
