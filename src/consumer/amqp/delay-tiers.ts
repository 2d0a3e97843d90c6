import { type Duration, toMs } from '../../duration.js';
import { InvalidArgumentError } from '../../errors.js';

/**
 * RabbitMQ has no per-message delay on redelivery, and per-message TTLs in one queue only
 * expire at the head (a 10-minute message blocks a 1-second one behind it). So each delay
 * gets its own queue with one queue-wide TTL: a "tier". A requested delay is rounded UP to
 * the next tier (a retry never comes sooner than the backoff asked for); a delay longer
 * than the largest tier waits the largest tier.
 *
 * The default tiers grow by at most 3.3x, so a rounded delay is at most ~3x the asked one,
 * and they cover the async retry profile (1 s up to its 5 min cap) with 7 of their 10 queues. A policy with
 * fixed delays (no jitter) can name its delays as tiers and get them exactly.
 */
export const DEFAULT_DELAY_TIERS: readonly Duration[] = [
  '1s',
  '3s',
  '10s',
  '30s',
  '1m',
  '2m',
  '5m',
  '15m',
  '30m',
  '1h',
];

/** One delay tier: its TTL and the queue that holds messages for that long. */
export interface DelayTier {
  delayMs: number;
  queue: string;
}

/** Parses tier durations into ascending, distinct milliseconds; throws {@link InvalidArgumentError}. */
export function parseDelayTiers(tiers: readonly Duration[]): number[] {
  if (!Array.isArray(tiers) || tiers.length === 0) {
    throw new InvalidArgumentError('delayTiers must be a non-empty array of durations');
  }
  const ms = tiers.map((tier, i) => {
    const value = toMs(tier, `delayTiers[${i}]`);
    if (!Number.isInteger(value) || value < 1) {
      throw new InvalidArgumentError(
        `delayTiers[${i}] must be a whole number of milliseconds >= 1, got ${JSON.stringify(tier)}`,
      );
    }
    // RabbitMQ's x-message-ttl is an unsigned 32-bit integer.
    if (value > 0xffffffff) {
      throw new InvalidArgumentError(`delayTiers[${i}] is longer than RabbitMQ allows (~49 days)`);
    }
    return value;
  });
  return [...new Set(ms)].sort((a, b) => a - b);
}

/** The tier a delay waits in: the smallest tier >= `delayMs`, or the largest tier. */
export function pickDelayTier<T extends { delayMs: number }>(
  tiers: readonly T[],
  delayMs: number,
): T {
  if (!Number.isFinite(delayMs) || delayMs < 0) {
    throw new InvalidArgumentError(`a retry delay must be a finite number >= 0, got ${delayMs}`);
  }
  const last = tiers[tiers.length - 1];
  if (last === undefined) throw new InvalidArgumentError('there are no delay tiers');
  for (const tier of tiers) {
    if (tier.delayMs >= delayMs) return tier;
  }
  return last;
}

/** A readable queue-name suffix for a tier: `250ms`, `5s`, `2m`, `1h`. */
export function formatTier(delayMs: number): string {
  if (delayMs % 3_600_000 === 0) return `${delayMs / 3_600_000}h`;
  if (delayMs % 60_000 === 0) return `${delayMs / 60_000}m`;
  if (delayMs % 1000 === 0) return `${delayMs / 1000}s`;
  return `${delayMs}ms`;
}
