import { InvalidArgumentError } from '../../errors.js';
import { utf8Bytes } from './item.js';
import { showValue } from '../show-value.js';
import { checkWellFormedKey, checkWellFormedText } from '../well-formed.js';

/** DynamoDB's bound on a partition key value. */
const MAX_KEY_BYTES = 2048;

/** Throws {@link InvalidArgumentError} unless `key` is a string of 1..2048 UTF-8 bytes. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || utf8Bytes(key) > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(
      `dynamodb store: key must be a string of 1 to ${MAX_KEY_BYTES} UTF-8 bytes, got ${showValue(key)}`,
    );
  }
  checkWellFormedKey('dynamodb store', key);
}

/**
 * Throws unless `value` is well-formed text (results, errors, fingerprints and step names are
 * opaque, and must come back as they were given).
 */
export function checkString(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(
      `dynamodb store: ${what} must be a string, got ${showValue(value)}`,
    );
  }
  checkWellFormedText('dynamodb store', what, value);
}

/** Throws unless `token` is a positive safe integer (tokens come from begin). */
export function checkToken(token: unknown): asserts token is number {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token <= 0) {
    throw new InvalidArgumentError(
      `dynamodb store: token must be a positive integer from begin, got ${showValue(token)}`,
    );
  }
}

/** A duration in whole ms (rounded up); `min` is the smallest accepted. */
export function duration(what: string, ms: unknown, min: number): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < min || ms > 1e13) {
    throw new InvalidArgumentError(
      `dynamodb store: ${what} must be a finite number of milliseconds >= ${min}, got ${showValue(ms)}`,
    );
  }
  return Math.max(min, Math.ceil(ms));
}
