import { InvalidArgumentError } from '../errors.js';

type MaybeWellFormed = string & { isWellFormed(): boolean };

/**
 * Throws unless `key` is well-formed UTF-16 (no lone surrogate). Every store but memory keeps
 * keys as UTF-8, and the drivers write a lone surrogate as U+FFFD: `'k\uD800'` and
 * `'k\uDBFF'` would name one record, and a batch could not find its own row again. The keys
 * `idempotent()` makes are hex; this guards a caller of the store itself.
 */
export function checkWellFormedKey(store: string, key: string): void {
  checkWellFormedText(store, 'key', key);
}

/**
 * Throws unless `value` (a fingerprint, a result, an error, a step name or result) is
 * well-formed UTF-16. The drivers write a lone surrogate as U+FFFD (or bytes that read back
 * as U+FFFD), so the text would not come back as it was given: a replay would hand back
 * another value, and two fingerprints that differ only there would match. The default codec
 * never writes one (JSON escapes it); a codec of the caller's, or a caller of the store
 * itself, might.
 */
export function checkWellFormedText(store: string, what: string, value: string): void {
  if (!(value as MaybeWellFormed).isWellFormed()) {
    throw new InvalidArgumentError(
      `${store}: ${what} must be well-formed text; it has a lone UTF-16 surrogate`,
    );
  }
}
