import { InvalidArgumentError } from '../../errors.js';
import { showValue } from '../show-value.js';
import { checkWellFormedKey, checkWellFormedText } from '../well-formed.js';

/** Throws {@link InvalidArgumentError} unless `key` is a non-empty string. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError(
      `redis store: key must be a non-empty string, got ${showValue(key)}`,
    );
  }
  checkWellFormedKey('redis store', key);
}

/**
 * Throws unless `value` is well-formed text (results, errors, fingerprints and step names are
 * opaque, and must come back as they were given).
 */
export function checkString(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(
      `redis store: ${what} must be a string, got ${showValue(value)}`,
    );
  }
  checkWellFormedText('redis store', what, value);
}

/** Throws unless `token` is a positive safe integer (tokens come from begin). */
export function checkToken(token: unknown): asserts token is number {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token <= 0) {
    throw new InvalidArgumentError(
      `redis store: token must be a positive integer from begin, got ${showValue(token)}`,
    );
  }
}

/** A duration in ms as the decimal integer a script reads; `min` is the smallest accepted. */
export function durationArg(what: string, ms: unknown, min: number): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < min || ms > 1e13) {
    throw new InvalidArgumentError(
      `redis store: ${what} must be a finite number of milliseconds >= ${min}, got ${showValue(ms)}`,
    );
  }
  return String(Math.max(min, Math.ceil(ms)));
}
