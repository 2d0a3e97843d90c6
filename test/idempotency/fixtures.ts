import type { IdempotencyStore } from '../../src/idempotency/store.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

/** A promise with its resolve and reject handed out. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A fake clock shared by a memory store and the core. */
export function setup(): { clock: FakeClock; store: IdempotencyStore } {
  const clock = new FakeClock();
  return { clock, store: createMemoryStore({ clock }) };
}

/** An error the default classifier retries. */
export function transientError(message = 'connection reset'): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}

/** Lets pending promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise<void>((resolve) => setImmediate(resolve));
}
