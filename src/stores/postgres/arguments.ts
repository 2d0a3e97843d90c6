import { InvalidArgumentError } from '../../errors.js';
import { showValue } from '../show-value.js';
import { checkWellFormedKey, checkWellFormedText } from '../well-formed.js';

/*
 * Argument checks shared by the PostgreSQL store's methods. Every public entry point turns
 * bad input into InvalidArgumentError naming the problem, before anything reaches the server.
 */

/** Longest key accepted (the core passes 64 hex characters). */
export const MAX_KEY_LENGTH = 255;

/** Throws unless `key` is a non-empty string of at most {@link MAX_KEY_LENGTH} characters without NUL. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new InvalidArgumentError(
      `postgres store: key must be a string of 1 to ${MAX_KEY_LENGTH} characters, got ${showValue(key)}`,
    );
  }
  checkNoNul('key', key);
  checkWellFormedKey('postgres store', key);
}

/** Throws unless `value` is a string PostgreSQL `text` holds as given (no NUL, no lone surrogate). */
export function checkText(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(
      `postgres store: ${what} must be a string, got ${showValue(value)}`,
    );
  }
  checkNoNul(what, value);
  checkWellFormedText('postgres store', what, value);
}

/** Throws unless `token` is a positive safe integer (tokens come from begin). */
export function checkToken(token: unknown): asserts token is number {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token <= 0) {
    throw new InvalidArgumentError(
      `postgres store: token must be a positive integer from begin, got ${showValue(token)}`,
    );
  }
}

/** A duration in whole milliseconds (rounded up), or InvalidArgumentError. */
export function durationArg(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > 1e13) {
    throw new InvalidArgumentError(
      `postgres store: ${what} must be a finite number of milliseconds > 0, got ${showValue(ms)}`,
    );
  }
  return Math.ceil(ms);
}

function checkNoNul(what: string, value: string): void {
  // PostgreSQL text and jsonb cannot hold U+0000; the core's codec never produces it raw.
  if (value.includes('\u0000')) {
    throw new InvalidArgumentError(
      `postgres store: ${what} contains a NUL character, which PostgreSQL text cannot store`,
    );
  }
}

/** A short, safe rendering of a bad argument for messages. */
