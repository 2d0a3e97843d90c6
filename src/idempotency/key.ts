import {
  IdempotencyKeyInvalidError,
  IdempotencyKeyMissingError,
  InvalidArgumentError,
} from '../errors.js';
import type { KeySource } from './types.js';

/** Longest accepted idempotency key, in characters (Unicode code points). */
export const MAX_KEY_LENGTH = 255;

// C0 controls, DEL and C1 controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Checks a caller's idempotency key and returns it. `undefined` or `null` is
 * {@link IdempotencyKeyMissingError}; anything else that is not a string of 1 to 255
 * characters without control characters is {@link IdempotencyKeyInvalidError}. Length
 * counts Unicode code points, so an emoji is one character. `what` names the key in messages.
 */
export function validateKey(key: unknown, what = 'idempotency key'): string {
  if (key === undefined || key === null) {
    throw new IdempotencyKeyMissingError(`${what} is required but none was given`);
  }
  if (typeof key !== 'string') {
    throw new IdempotencyKeyInvalidError(`${what} must be a string, got ${describeType(key)}`);
  }
  if (key.length === 0) {
    throw new IdempotencyKeyInvalidError(`${what} must not be empty`);
  }
  // Code points, not UTF-16 units; the cheap check first.
  if (key.length > MAX_KEY_LENGTH && [...key].length > MAX_KEY_LENGTH) {
    throw new IdempotencyKeyInvalidError(
      `${what} must be at most ${MAX_KEY_LENGTH} characters, got ${[...key].length}`,
    );
  }
  const control = CONTROL.exec(key);
  if (control !== null) {
    const code = control[0].charCodeAt(0).toString(16).padStart(4, '0');
    throw new IdempotencyKeyInvalidError(
      `${what} must not contain control characters (found U+${code} at index ${control.index})`,
    );
  }
  return key;
}

/**
 * Splits a field path such as `requestId` or `body.id` into its segments, or throws
 * {@link InvalidArgumentError} naming `what`.
 */
export function parsePath(path: string, what: string): string[] {
  const segments = path.split('.');
  if (path.length === 0 || segments.some((s) => s.length === 0)) {
    throw new InvalidArgumentError(
      `${what} must be a field path such as "requestId" or "body.id", got ${JSON.stringify(path)}`,
    );
  }
  return segments;
}

const UNSAFE_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The value at `segments` inside `input`, or undefined. Getters are read (a `Request`'s
 * `headers` is one); `__proto__`, `constructor` and `prototype` never match.
 */
export function readPath(input: unknown, segments: readonly string[]): unknown {
  let current: unknown = input;
  for (const segment of segments) {
    if (current === null || (typeof current !== 'object' && typeof current !== 'function')) {
      return undefined;
    }
    if (UNSAFE_SEGMENTS.has(segment)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

/**
 * Turns a {@link KeySource} into a function that reads the raw key (not yet validated) from an
 * input. Throws {@link InvalidArgumentError} for a source that is neither a path nor a function.
 */
export function keyReader<I>(source: KeySource<I>): (input: I) => unknown {
  if (typeof source === 'function') return source;
  if (typeof source === 'string') {
    const segments = parsePath(source, 'key');
    return (input) => readPath(input, segments);
  }
  throw new InvalidArgumentError(
    `key must be a field path such as "requestId" or a function, got ${describeType(source)}`,
  );
}

/** `typeof`, with null and arrays told apart, for messages. */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
