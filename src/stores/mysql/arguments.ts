import { InvalidArgumentError } from '../../errors.js';
import { showValue } from '../show-value.js';
import { checkWellFormedKey, checkWellFormedText } from '../well-formed.js';

/*
 * Argument checks of the MySQL store's methods: bad input becomes InvalidArgumentError naming
 * the problem, before anything reaches the server.
 */

/** Longest key accepted, in UTF-8 bytes (the `key` column is VARBINARY(255)). */
export const MAX_KEY_BYTES = 255;

/** Throws unless `key` is a non-empty string of at most {@link MAX_KEY_BYTES} UTF-8 bytes. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(
      `mysql store: key must be a non-empty string of at most ${MAX_KEY_BYTES} UTF-8 bytes, got ${showValue(key)}`,
    );
  }
  checkWellFormedKey('mysql store', key);
}

/** Throws unless `fingerprint` is a well-formed string of at most 255 UTF-8 bytes. */
export function checkFingerprint(fingerprint: unknown): asserts fingerprint is string {
  if (typeof fingerprint !== 'string' || Buffer.byteLength(fingerprint) > 255) {
    throw new InvalidArgumentError(
      `mysql store: fingerprint must be a string of at most 255 UTF-8 bytes, got ${showValue(fingerprint)}`,
    );
  }
  checkWellFormed('fingerprint', fingerprint);
}

/**
 * Throws unless `value` is a well-formed string (results, errors and step names are opaque).
 * mysql2 writes a lone surrogate as U+FFFD: a batch, which compares what it sent with what it
 * reads back, would then answer otherwise than the same call alone. The default codec never
 * writes one; a codec of the caller's might.
 */
export function checkString(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(
      `mysql store: ${what} must be a string, got ${showValue(value)}`,
    );
  }
  checkWellFormed(what, value);
}

function checkWellFormed(what: string, value: string): void {
  checkWellFormedText('mysql store', what, value);
}

/** Throws unless `token` is a positive safe integer (tokens come from begin). */
export function checkToken(token: unknown): asserts token is number {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token <= 0) {
    throw new InvalidArgumentError(
      `mysql store: token must be a positive integer from begin, got ${showValue(token)}`,
    );
  }
}

/** A duration in whole milliseconds (rounded up), or InvalidArgumentError. */
export function durationArg(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > 1e13) {
    throw new InvalidArgumentError(
      `mysql store: ${what} must be a finite number of milliseconds > 0, got ${showValue(ms)}`,
    );
  }
  return Math.ceil(ms);
}

/** A short, safe rendering of a bad argument for messages. */
