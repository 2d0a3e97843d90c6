import { RecordCorruptError } from '../errors.js';
import { setStep } from '../idempotency/set-step.js';

/*
 * Column readers shared by the SQL stores: a row that cannot be read back faithfully is
 * RecordCorruptError naming the store, the record and the column, never a half-read record.
 */

/** A stored integer (number, decimal string or bigint) as a safe integer. */
export function integerColumn(store: string, key: string, column: string, value: unknown): number {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'bigint') n = Number(value);
  else if (typeof value === 'string' && /^-?\d+$/.test(value)) n = Number(value);
  else n = Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new RecordCorruptError(
      `${store} store: record ${JSON.stringify(key)} has a ${column} that is not a safe integer`,
    );
  }
  return n;
}

/**
 * A stored attempts count: a safe integer below the INT column's maximum (a store's own
 * writes never reach it; a takeover could not count past it).
 */
export function attemptsColumn(store: string, key: string, value: unknown): number {
  const n = integerColumn(store, key, 'attempts', value);
  if (n >= 2_147_483_647) {
    throw new RecordCorruptError(
      `${store} store: record ${JSON.stringify(key)} has attempts at the column's maximum`,
    );
  }
  return n;
}

/** Steps stored as a JSON object of strings (text, or already parsed by the driver). */
export function stepsFromJson(store: string, key: string, value: unknown): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = typeof value === 'string' ? JSON.parse(value) : value;
  } catch (error) {
    throw new RecordCorruptError(
      `${store} store: record ${JSON.stringify(key)} has steps that are not JSON`,
      error,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new RecordCorruptError(
      `${store} store: record ${JSON.stringify(key)} has steps that are not an object`,
    );
  }
  const steps: Record<string, string> = {};
  for (const [name, result] of Object.entries(parsed)) {
    if (typeof result !== 'string') {
      throw new RecordCorruptError(
        `${store} store: record ${JSON.stringify(key)} has a step ${JSON.stringify(name)} that is not a string`,
      );
    }
    setStep(steps, name, result);
  }
  return steps;
}
