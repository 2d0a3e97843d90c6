import { InvalidArgumentError } from '../errors.js';

/**
 * How much longer the client waits for a statement than the server lets it run. The server's
 * limit starts when it begins the statement, a little after the client sent it: were the two
 * equal, a statement waiting on a lock could be given the lock in between, after the client
 * gave up, and leave a claim that no caller holds (its key in progress for a whole lease).
 * With the margin, the server cancels first and the client hears why; the client's own limit
 * is for a server that does not answer at all.
 */
export const CLIENT_WAIT_MARGIN_MS = 1000;

/** Longest statement or connect timeout accepted: an hour. */
const MAX_TIMEOUT_MS = 3_600_000;

/** The timeouts of a store's own pool, checked. */
export interface PoolTimeouts {
  /** Give up connecting after this many ms. */
  connectMs: number;
  /** The server cancels a statement that runs longer than this. */
  statementMs: number;
  /** The client stops waiting for a statement after this ({@link CLIENT_WAIT_MARGIN_MS} more). */
  clientMs: number;
}

/**
 * Checks `connectTimeoutMs` and `queryTimeoutMs` (integers from 1 ms to an hour; defaults 5 s
 * and 15 s) and derives the client's wait from the latter.
 */
export function poolTimeouts(
  who: string,
  options: { connectTimeoutMs?: unknown; queryTimeoutMs?: unknown },
): PoolTimeouts {
  const connectMs = timeout(who, 'connectTimeoutMs', options.connectTimeoutMs, 5000);
  const statementMs = timeout(who, 'queryTimeoutMs', options.queryTimeoutMs, 15_000);
  return { connectMs, statementMs, clientMs: statementMs + CLIENT_WAIT_MARGIN_MS };
}

function timeout(who: string, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < 1 ||
    value > MAX_TIMEOUT_MS
  ) {
    throw new InvalidArgumentError(
      `${who}: ${name} must be an integer number of ms from 1 to ${MAX_TIMEOUT_MS}, got ${String(value)}`,
    );
  }
  return value;
}
