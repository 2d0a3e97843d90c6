import { type Clock, systemClock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import type { RetryBudget } from './types.js';

/** Options of {@link createRatioBudget}; the defaults are Finagle's. */
export interface RatioBudgetOptions {
  /** Retries allowed per request over the window (default 0.2: 20%). */
  ratio?: number;
  /** Retries allowed per second even with no traffic (default 10). */
  minRetriesPerSecond?: number;
  /** Length of the sliding window in ms (default 10 000). */
  windowMs?: number;
  clock?: Clock;
}

/** A ratio {@link RetryBudget}. */
export interface RatioBudget extends RetryBudget {
  /** Requests and retries counted in the current window. */
  stats(): { requests: number; retries: number };
}

/** The window moves in this many steps: counts older than the window fall out a slice at a time. */
const SLICES = 10;

/**
 * A retry budget as a share of traffic, like Finagle's: over a sliding window, retries may be
 * at most `ratio` of the requests plus a reserve of `minRetriesPerSecond * window`, so a
 * quiet service can still retry a little while a busy one never adds more than 20% load to
 * a sick dependency. First attempts are never blocked (they are what `onRequest` counts).
 * What is left is never negative.
 *
 * @example
 * const budget = createRatioBudget({ ratio: 0.1 });
 * await retry(() => callInventory(sku), { ...profiles.sync, budget });
 */
export function createRatioBudget(options: RatioBudgetOptions = {}): RatioBudget {
  const ratio = options.ratio ?? 0.2;
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0) {
    throw new InvalidArgumentError(`ratio must be a finite number >= 0, got ${String(ratio)}`);
  }
  const minPerSecond = options.minRetriesPerSecond ?? 10;
  if (typeof minPerSecond !== 'number' || !Number.isFinite(minPerSecond) || minPerSecond < 0) {
    throw new InvalidArgumentError(
      `minRetriesPerSecond must be a finite number >= 0, got ${String(minPerSecond)}`,
    );
  }
  const windowMs = options.windowMs ?? 10_000;
  if (typeof windowMs !== 'number' || !Number.isFinite(windowMs) || windowMs < SLICES) {
    throw new InvalidArgumentError(
      `windowMs must be a finite number >= ${SLICES}, got ${String(windowMs)}`,
    );
  }
  const clock = options.clock ?? systemClock;
  const sliceMs = windowMs / SLICES;
  const reserve = (minPerSecond * windowMs) / 1000;
  const sliceIds = new Array<number>(SLICES).fill(Number.NEGATIVE_INFINITY);
  const requests = new Array<number>(SLICES).fill(0);
  const retries = new Array<number>(SLICES).fill(0);

  /** Moves the window to now; returns the slot of the current slice. */
  const advance = (): number => {
    const id = Math.floor(clock.now() / sliceMs);
    const slot = ((id % SLICES) + SLICES) % SLICES;
    if (sliceIds[slot] !== id) {
      sliceIds[slot] = id;
      requests[slot] = 0;
      retries[slot] = 0;
    }
    return slot;
  };
  const totals = (): { requests: number; retries: number } => {
    const current = Math.floor(clock.now() / sliceMs);
    let req = 0;
    let ret = 0;
    for (let i = 0; i < SLICES; i++) {
      const id = sliceIds[i] ?? Number.NEGATIVE_INFINITY;
      if (id > current - SLICES && id <= current) {
        req += requests[i] ?? 0;
        ret += retries[i] ?? 0;
      }
    }
    return { requests: req, retries: ret };
  };
  const allowance = (): number => {
    const t = totals();
    return reserve + ratio * t.requests - t.retries;
  };

  return {
    onRequest() {
      const slot = advance();
      requests[slot] = (requests[slot] ?? 0) + 1;
    },
    tryAcquireRetry() {
      const slot = advance();
      if (allowance() < 1) return false;
      retries[slot] = (retries[slot] ?? 0) + 1;
      return true;
    },
    refundRetry() {
      // From the newest slice that counted one (the retry was paid for at most a sleep ago).
      const current = Math.floor(clock.now() / sliceMs);
      for (let back = 0; back < SLICES; back++) {
        const slot = ((((current - back) % SLICES) + SLICES) % SLICES) as number;
        if (sliceIds[slot] === current - back && (retries[slot] ?? 0) > 0) {
          retries[slot] = (retries[slot] ?? 0) - 1;
          return;
        }
      }
    },
    onSuccess() {},
    remaining: () => Math.max(0, Math.floor(allowance())),
    stats: totals,
  };
}
