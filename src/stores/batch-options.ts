import { InvalidArgumentError } from '../errors.js';
import { showValue } from './show-value.js';

/** How a store batches concurrent calls (see {@link KeyBatcher}). */
export interface BatchSettings {
  /** Most calls in one statement or script. */
  maxBatchSize: number;
  /** Most batch statements running at once, per kind. */
  maxInFlight: number;
}

/**
 * The `batch` option of a store factory (`false`/absent: no batching; `true`: `defaults`; an
 * object: its fields over `defaults`), checked: each number a whole number from 1 to `most`.
 * `who` names the factory in the error, e.g. `createRedisStore`.
 */
export function batchSettings(
  who: string,
  batch: unknown,
  defaults: BatchSettings,
  most = 10_000,
): BatchSettings | undefined {
  if (batch === undefined || batch === false) return undefined;
  const given = batch === true ? {} : batch;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new InvalidArgumentError(
      `${who}: batch must be a boolean or { maxBatchSize, maxInFlight }, got ${showValue(batch)}`,
    );
  }
  const fields = given as Partial<Record<keyof BatchSettings, unknown>>;
  const settings = {
    maxBatchSize: fields.maxBatchSize ?? defaults.maxBatchSize,
    maxInFlight: fields.maxInFlight ?? defaults.maxInFlight,
  };
  for (const [name, value] of Object.entries(settings)) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > most) {
      throw new InvalidArgumentError(
        `${who}: batch.${name} must be a whole number from 1 to ${most}, got ${showValue(value)}`,
      );
    }
  }
  return settings as BatchSettings;
}
