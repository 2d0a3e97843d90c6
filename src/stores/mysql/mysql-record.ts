import { RecordCorruptError } from '../../errors.js';
import { attemptsColumn, integerColumn as sharedInteger, stepsFromJson } from '../sql-columns.js';
import type { IdempotencyRecord, RecordStatus } from '../../idempotency/store.js';

/*
 * Rows to records. `key` and `fingerprint` are VARBINARY (exact bytes, no PAD SPACE
 * collation making `'k'` equal `'k '`): they arrive as Buffers holding UTF-8. A row that
 * cannot be read back faithfully is RecordCorruptError, never a half-read record.
 */

const STATUSES: ReadonlySet<string> = new Set(['in_progress', 'completed', 'failed']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A VARBINARY or text column as a string, or RecordCorruptError. */
export function textColumn(what: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) {
    try {
      return utf8.decode(value);
    } catch (error) {
      throw new RecordCorruptError(`mysql store: a record's ${what} is not UTF-8`, error);
    }
  }
  throw new RecordCorruptError(`mysql store: a record's ${what} is not text`);
}

/** A stored integer (number, decimal string or bigint) as a safe integer, or RecordCorruptError. */
export function integerColumn(key: string, column: string, value: unknown): number {
  return sharedInteger('mysql', key, column, value);
}

function stepsColumn(key: string, value: unknown): Record<string, string> {
  return stepsFromJson('mysql', key, textColumn('steps', value));
}

function optionalText(key: string, column: string, value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string' || value instanceof Uint8Array) return textColumn(column, value);
  throw new RecordCorruptError(`mysql store: record ${JSON.stringify(key)} has a bad ${column}`);
}

/** One row (the columns of RECORD_COLUMNS) as a record. */
export function recordFromRow(row: unknown): IdempotencyRecord {
  if (typeof row !== 'object' || row === null) {
    throw new RecordCorruptError('mysql store: a record row is not an object');
  }
  const r = row as Record<string, unknown>;
  const key = textColumn('key', r.key);
  const status = textColumn('status', r.status);
  if (!STATUSES.has(status)) {
    throw new RecordCorruptError(
      `mysql store: record ${JSON.stringify(key)} has an unknown status ${JSON.stringify(status)}`,
    );
  }
  const record: IdempotencyRecord = {
    key,
    fingerprint: textColumn('fingerprint', r.fingerprint),
    status: status as RecordStatus,
    token: integerColumn(key, 'token', r.token),
    attempts: attemptsColumn('mysql', key, r.attempts),
    leaseUntil: integerColumn(key, 'lease_until', r.lease_until),
    expiresAt: integerColumn(key, 'expires_at', r.expires_at),
    steps: stepsColumn(key, r.steps),
    createdAt: integerColumn(key, 'created_at', r.created_at),
    updatedAt: integerColumn(key, 'updated_at', r.updated_at),
  };
  const result = optionalText(key, 'result', r.result);
  if (result !== undefined) record.result = result;
  const error = optionalText(key, 'error', r.error);
  if (error !== undefined) record.error = error;
  if (record.status === 'completed' && result === undefined) {
    throw new RecordCorruptError(
      `mysql store: record ${JSON.stringify(key)} is completed without a result`,
    );
  }
  if (record.status === 'failed' && error === undefined) {
    throw new RecordCorruptError(
      `mysql store: record ${JSON.stringify(key)} is failed without an error`,
    );
  }
  return record;
}
