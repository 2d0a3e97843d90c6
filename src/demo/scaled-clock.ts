import type { Clock } from '../clock.js';

/**
 * A clock that runs `speed` times faster than real time, so the demo can run the async
 * profile's real delays (seconds to minutes) in a blink while every component still reads
 * one consistent clock.
 */
export function createScaledClock(speed: number, start = Date.now()): Clock {
  const realStart = performance.now();
  return {
    now: () => start + Math.floor((performance.now() - realStart) * speed),
    setTimer(ms, callback) {
      const handle = setTimeout(callback, Math.max(0, ms / speed));
      handle.unref?.();
      return () => clearTimeout(handle);
    },
  };
}
