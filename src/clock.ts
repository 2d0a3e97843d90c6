import { AbortedError } from './errors.js';

/**
 * Time as reprocess sees it. Every delay, deadline, lease and expiry is computed from a
 * `Clock`, so tests pass a fake one and never sleep for real.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` after `ms` milliseconds; returns a function that cancels it. */
  setTimer(ms: number, callback: () => void): () => void;
}

/**
 * The real clock: `Date.now()` and `setTimeout`. Its timers keep the process alive like any
 * timer (a script awaiting a retry's backoff must not exit mid-sleep); every timer reprocess
 * starts is cancelled when the work it belongs to ends.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, callback) {
    const handle = setTimeout(callback, Math.max(0, ms));
    return () => clearTimeout(handle);
  },
};

/**
 * Waits `ms` on `clock`. An abort of `signal` ends the wait at once with an
 * {@link AbortedError} (whose cause is the signal's reason).
 */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
  if (ms <= 0 && !signal) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      cancel();
      reject(new AbortedError(signal?.reason));
    };
    const cancel = clock.setTimer(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
