import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import type { RecordStatus } from '../idempotency/store.js';
import { showValue } from './show-value.js';

/** Records in a page of `list` when the caller names no limit. */
export const DEFAULT_LIST_LIMIT = 100;
/** The most records in one page of `list`, whatever the caller asks. */
export const MAX_LIST_LIMIT = 1000;

/** `list`'s limit, checked (a whole number >= 1) and capped at {@link MAX_LIST_LIMIT}. */
export function listLimit(store: string, limit: unknown): number {
  if (limit === undefined) return DEFAULT_LIST_LIMIT;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(
      `${store}: list limit must be a whole number >= 1, got ${showValue(limit)}`,
    );
  }
  return Math.min(limit, MAX_LIST_LIMIT);
}

/** `list`'s status filter, checked; undefined when absent. */
export function listStatus(store: string, status: unknown): RecordStatus | undefined {
  if (status === undefined) return undefined;
  if (status === 'in_progress' || status === 'completed' || status === 'failed') return status;
  throw new InvalidArgumentError(
    `${store}: list status must be in_progress, completed or failed, got ${showValue(status)}`,
  );
}

/** A cursor naming the last key of a page: base64url, opaque to callers, exact for `key > ?`. */
export function encodeKeyCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

/** The key a cursor of {@link encodeKeyCursor} names; anything else is refused. */
export function decodeKeyCursor(store: string, cursor: unknown): string {
  if (typeof cursor === 'string' && /^[A-Za-z0-9_-]+$/.test(cursor)) {
    const key = Buffer.from(cursor, 'base64url').toString('utf8');
    if (encodeKeyCursor(key) === cursor) return key;
  }
  throw new InvalidArgumentError(
    `${store}: list cursor must be one a previous page returned, got ${showValue(cursor)}`,
  );
}
