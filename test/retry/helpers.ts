import type { FakeClock } from '../../src/testing/fake-clock.js';

/** How a promise settled. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Runs the fake clock until no timer is left and returns how `promise` settled. The handlers
 * are attached before time moves, so a rejection is never unhandled.
 */
export async function drive<T>(clock: FakeClock, promise: Promise<T>): Promise<Settled<T>> {
  const settled = promise.then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
  await clock.runAll();
  return settled;
}

/** How `promise` settles, without moving the clock (for tests that move it themselves). */
export function capture<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
}

/** The error of a settled promise, failing the test when it succeeded. */
export function errorOf<T>(settled: Settled<T>): unknown {
  if (settled.ok) throw new Error(`expected a failure, got ${JSON.stringify(settled.value)}`);
  return settled.error;
}

/** A random source that replays `values` in a loop (for exact formula checks). */
export function sequence(...values: number[]): () => number {
  let i = 0;
  return () => {
    const v = values[i % values.length] ?? 0;
    i++;
    return v;
  };
}

/** An error with a Node-style `code`. */
export function codeError(code: string, message = code): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** An error with an HTTP `status`. */
export function statusError(status: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`HTTP ${status}`), { status }, extra);
}
