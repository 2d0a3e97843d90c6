import { InvalidArgumentError } from '../errors.js';
import type { QuarantineFilter, QuarantineHistory } from './types.js';

/**
 * Validates a listing or redrive filter (every dead-letter queue shares these rules) and
 * returns its `ratePerSecond`, if any. Throws {@link InvalidArgumentError} naming the field.
 */
export function checkQuarantineFilter(
  filter: (QuarantineFilter & { ratePerSecond?: number }) | undefined,
): number | undefined {
  if (filter === undefined) return undefined;
  if (typeof filter !== 'object' || filter === null) {
    throw new InvalidArgumentError(`a quarantine filter must be an object, got ${String(filter)}`);
  }
  const { errorCode, olderThanMs, idempotencyKey, limit, ratePerSecond } = filter;
  if (errorCode !== undefined && (typeof errorCode !== 'string' || errorCode === '')) {
    throw new InvalidArgumentError(
      `filter.errorCode must be a non-empty string, got ${JSON.stringify(errorCode)}`,
    );
  }
  if (
    idempotencyKey !== undefined &&
    (typeof idempotencyKey !== 'string' || idempotencyKey === '')
  ) {
    throw new InvalidArgumentError(
      `filter.idempotencyKey must be a non-empty string, got ${JSON.stringify(idempotencyKey)}`,
    );
  }
  if (
    olderThanMs !== undefined &&
    (typeof olderThanMs !== 'number' || !Number.isFinite(olderThanMs) || olderThanMs < 0)
  ) {
    throw new InvalidArgumentError(
      `filter.olderThanMs must be a finite number >= 0, got ${String(olderThanMs)}`,
    );
  }
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
    throw new InvalidArgumentError(`filter.limit must be an integer >= 0, got ${String(limit)}`);
  }
  if (
    ratePerSecond !== undefined &&
    (typeof ratePerSecond !== 'number' || !(ratePerSecond > 0) || Number.isNaN(ratePerSecond))
  ) {
    throw new InvalidArgumentError(
      `ratePerSecond must be a number > 0 (or left out for no limit), got ${String(ratePerSecond)}`,
    );
  }
  return ratePerSecond === undefined || ratePerSecond === Number.POSITIVE_INFINITY
    ? undefined
    : ratePerSecond;
}

/** Whether a quarantined message's history passes `filter` at time `now` (epoch ms). */
export function matchesFilter(
  history: QuarantineHistory,
  filter: QuarantineFilter | undefined,
  now: number,
): boolean {
  if (filter === undefined) return true;
  if (filter.errorCode !== undefined && history.lastError.code !== filter.errorCode) return false;
  if (filter.idempotencyKey !== undefined && history.idempotencyKey !== filter.idempotencyKey) {
    return false;
  }
  if (filter.olderThanMs !== undefined && now - history.quarantinedAt < filter.olderThanMs) {
    return false;
  }
  return true;
}
