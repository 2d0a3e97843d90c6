import { InvalidArgumentError } from '../errors.js';

/**
 * Throws unless `key` is well-formed UTF-16 (no lone surrogate). Every store but memory keeps
 * keys as UTF-8, and the drivers write a lone surrogate as U+FFFD: `'k\uD800'` and
 * `'k\uDBFF'` would name one record, and a batch could not find its own row again. The keys
 * `idempotent()` makes are hex; this guards a caller of the store itself.
 */
export function checkWellFormedKey(store: string, key: string): void {
  if (!(key as string & { isWellFormed(): boolean }).isWellFormed()) {
    throw new InvalidArgumentError(
      `${store}: key must be well-formed text; it has a lone UTF-16 surrogate`,
    );
  }
}
