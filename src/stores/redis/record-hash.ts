import { RecordCorruptError } from '../../errors.js';
import type { IdempotencyRecord, RecordStatus } from '../../idempotency/store.js';

const STATUSES: ReadonlySet<string> = new Set<RecordStatus>(['in_progress', 'completed', 'failed']);

/**
 * Reads a record from the flat `HGETALL` reply of its hash (see scripts.ts for the fields).
 * Throws {@link RecordCorruptError} naming what is wrong when the hash cannot be a record.
 */
export function recordFromHash(key: string, flat: unknown): IdempotencyRecord {
  if (!Array.isArray(flat) || flat.length % 2 !== 0) {
    throw corrupt(key, 'the reply is not a field/value list');
  }
  const fields = new Map<string, string>();
  const steps: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const field: unknown = flat[i];
    const value: unknown = flat[i + 1];
    if (typeof field !== 'string' || typeof value !== 'string') {
      throw corrupt(key, 'a field or value is not a string');
    }
    if (field.startsWith('s:')) steps[field.slice(2)] = value;
    else fields.set(field, value);
  }
  const status = fields.get('st');
  if (status === undefined || !STATUSES.has(status)) {
    throw corrupt(key, `status is ${JSON.stringify(status)}`);
  }
  const fingerprint = fields.get('fp');
  if (fingerprint === undefined) throw corrupt(key, 'the fingerprint is missing');
  const record: IdempotencyRecord = {
    key,
    fingerprint,
    status: status as RecordStatus,
    token: integer(key, fields, 'tok'),
    attempts: integer(key, fields, 'att'),
    leaseUntil: integer(key, fields, 'lu'),
    expiresAt: integer(key, fields, 'exp'),
    steps,
    createdAt: integer(key, fields, 'ca'),
    updatedAt: integer(key, fields, 'ua'),
  };
  const result = fields.get('res');
  if (result !== undefined) record.result = result;
  const error = fields.get('err');
  if (error !== undefined) record.error = error;
  return record;
}

/** Steps from the flat `{name, result, ...}` list a takeover returns. */
export function stepsFromList(key: string, flat: unknown): Record<string, string> {
  if (!Array.isArray(flat) || flat.length % 2 !== 0) {
    throw corrupt(key, 'the steps reply is not a name/result list');
  }
  const steps: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name: unknown = flat[i];
    const value: unknown = flat[i + 1];
    if (typeof name !== 'string' || typeof value !== 'string') {
      throw corrupt(key, 'a step name or result is not a string');
    }
    steps[name] = value;
  }
  return steps;
}

/** The JSON a script encoded with cjson (a list of strings). */
export function parseJson(key: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RecordCorruptError(
      `redis store: record ${JSON.stringify(key)} is unreadable: the script's JSON does not parse`,
      error,
    );
  }
}

/** A decimal integer written by a script. */
export function parseInteger(key: string, what: string, value: unknown): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw corrupt(key, `${what} is ${JSON.stringify(value)}`);
  return n;
}

function integer(key: string, fields: Map<string, string>, field: string): number {
  return parseInteger(key, `field ${field}`, fields.get(field));
}

function corrupt(key: string, why: string): RecordCorruptError {
  return new RecordCorruptError(`redis store: record ${JSON.stringify(key)} is unreadable: ${why}`);
}
