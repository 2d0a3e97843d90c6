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
  /**
   * Milliseconds on a clock that never jumps (any origin), for measuring how long something
   * took: how long a lease is surely still ours, how long to wait. Without it, `now()` is
   * used. The wall clock can be stepped (NTP, a VM resumed); counted on it, a step back would
   * keep a lost lease alive, and a step forward end a live one.
   */
  elapsed?(): number;
}

/** `clock.elapsed()`, or `clock.now()` for a clock without it. */
export function elapsedOn(clock: Clock): number {
  return clock.elapsed === undefined ? clock.now() : clock.elapsed();
}

/**
 * The real clock: `Date.now()`, `performance.now()` for durations, and `setTimeout`. Its
 * timers keep the process alive like any timer (a script awaiting a retry's backoff must not
 * exit mid-sleep); every timer reprocess starts is cancelled when the work it belongs to ends.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  elapsed: () => performance.now(),
  setTimer(ms, callback) {
    // setTimeout fires at once for anything past 2^31 - 1 ms (about 24.8 days), and for NaN:
    // a long wait is run as a chain of the longest timers, a NaN as no wait.
    let handle: ReturnType<typeof setTimeout>;
    const until = performance.now() + ms;
    const arm = (left: number): void => {
      if (left > MAX_TIMEOUT_MS) {
        handle = setTimeout(() => arm(until - performance.now()), MAX_TIMEOUT_MS);
      } else {
        handle = setTimeout(callback, left > 0 ? left : 0);
      }
    };
    arm(ms > 0 ? ms : 0);
    return () => clearTimeout(handle);
  },
};

/** The longest delay `setTimeout` honours. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * `clock.setTimer(ms, callback)`, but never asking a clock for more than `setTimeout` can
 * wait: a clock of the caller's own built on `setTimeout` would fire such a timer at once. A
 * longer wait is a chain of shorter timers, each re-armed for what is left on `clock.now()`.
 */
export function setTimerOn(clock: Clock, ms: number, callback: () => void): () => void {
  if (clock === systemClock || !(ms > MAX_TIMEOUT_MS)) return clock.setTimer(ms, callback);
  const until = clock.now() + ms;
  let cancel: () => void = () => undefined;
  const arm = (left: number): void => {
    cancel =
      left > MAX_TIMEOUT_MS
        ? clock.setTimer(MAX_TIMEOUT_MS, () => arm(until - clock.now()))
        : clock.setTimer(Math.max(0, left), callback);
  };
  arm(ms);
  return () => cancel();
}

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
    const cancel = setTimerOn(clock, ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
