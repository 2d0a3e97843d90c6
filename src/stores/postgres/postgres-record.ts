import { RecordCorruptError } from '../../errors.js';
import { attemptsColumn, integerColumn as sharedInteger, stepsFromJson } from '../sql-columns.js';
import type { IdempotencyRecord, RecordStatus } from '../../idempotency/store.js';

/*
 * Rows to records. A row that cannot be read back faithfully (edited by hand, a foreign
 * writer, a type parser the user installed on the pool) is RecordCorruptError, never a
 * half-read record. Integers may arrive as strings (pg's default for bigint), numbers or
 * bigints (custom type parsers); all must be safe integers.
 */

const STATUSES: ReadonlySet<string> = new Set(['in_progress', 'completed', 'failed']);

/** A stored integer column as a safe integer, or RecordCorruptError. */
export function integerColumn(key: string, column: string, value: unknown): number {
  return sharedInteger('postgres', key, column, value);
}

/** The `steps` column (jsonb read as text) as a map of strings, or RecordCorruptError. */
export function stepsColumn(key: string, value: unknown): Record<string, string> {
  return stepsFromJson('postgres', key, value);
}

/** One row (the columns of RECORD_COLUMNS) as a record. */
export function recordFromRow(row: unknown): IdempotencyRecord {
  if (typeof row !== 'object' || row === null) {
    throw new RecordCorruptError('postgres store: a record row is not an object');
  }
  const r = row as Record<string, unknown>;
  const key = r.key;
  if (typeof key !== 'string') {
    throw new RecordCorruptError('postgres store: a record row has no text key');
  }
  const status = r.status;
  if (typeof status !== 'string' || !STATUSES.has(status)) {
    throw new RecordCorruptError(
      `postgres store: record ${JSON.stringify(key)} has an unknown status ${JSON.stringify(status)}`,
    );
  }
  if (typeof r.fingerprint !== 'string') {
    throw new RecordCorruptError(
      `postgres store: record ${JSON.stringify(key)} has no text fingerprint`,
    );
  }
  const record: IdempotencyRecord = {
    key,
    fingerprint: r.fingerprint,
    status: status as RecordStatus,
    token: integerColumn(key, 'token', r.token),
    attempts: attemptsColumn('postgres', key, r.attempts),
    leaseUntil: integerColumn(key, 'lease_until', r.lease_until),
    expiresAt: integerColumn(key, 'expires_at', r.expires_at),
    steps: stepsColumn(key, r.steps),
    createdAt: integerColumn(key, 'created_at', r.created_at),
    updatedAt: integerColumn(key, 'updated_at', r.updated_at),
  };
  if (typeof r.result === 'string') record.result = r.result;
  else if (r.result !== null && r.result !== undefined) {
    throw new RecordCorruptError(`postgres store: record ${JSON.stringify(key)} has a bad result`);
  }
  if (typeof r.error === 'string') record.error = r.error;
  else if (r.error !== null && r.error !== undefined) {
    throw new RecordCorruptError(`postgres store: record ${JSON.stringify(key)} has a bad error`);
  }
  if (record.status === 'completed' && record.result === undefined) {
    throw new RecordCorruptError(
      `postgres store: record ${JSON.stringify(key)} is completed without a result`,
    );
  }
  if (record.status === 'failed' && record.error === undefined) {
    throw new RecordCorruptError(
      `postgres store: record ${JSON.stringify(key)} is failed without an error`,
    );
  }
  return record;
}
