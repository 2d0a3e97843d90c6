// Pure parts of the broker adapters (no broker needed): delay-tier choice and the history
// header codec both adapters share.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DELAY_TIERS,
  formatTier,
  parseDelayTiers,
  pickDelayTier,
} from '../../src/consumer/amqp/delay-tiers.js';
import {
  MAX_ERROR_MESSAGE_LENGTH,
  decodeHistory,
  encodeHistory,
} from '../../src/consumer/amqp/history-headers.js';
import { NATS_HISTORY_CODEC } from '../../src/consumer/nats/jetstream-headers.js';
import type { QuarantineHistory } from '../../src/consumer/types.js';
import { isReprocessError } from '../../src/errors.js';
import { headOf } from '../../src/clip-text.js';

const tiersArb = fc
  .uniqueArray(fc.integer({ min: 1, max: 10_000_000 }), { minLength: 1, maxLength: 12 })
  .map((ms) => parseDelayTiers(ms).map((delayMs) => ({ delayMs })));

describe('delay tiers', () => {
  it('picks the smallest tier at or above the delay, else the largest', () => {
    fc.assert(
      fc.property(tiersArb, fc.integer({ min: 0, max: 20_000_000 }), (tiers, delay) => {
        const chosen = pickDelayTier(tiers, delay);
        const largest = tiers[tiers.length - 1]?.delayMs as number;
        if (delay > largest) {
          expect(chosen.delayMs).toBe(largest);
        } else {
          expect(chosen.delayMs).toBeGreaterThanOrEqual(delay);
          expect(tiers.some((t) => t.delayMs >= delay && t.delayMs < chosen.delayMs)).toBe(false);
        }
      }),
    );
  });

  it('parses durations into ascending distinct milliseconds', () => {
    expect(parseDelayTiers(['5s', '1s', 1000, '250ms'])).toEqual([250, 1000, 5000]);
    const defaults = parseDelayTiers(DEFAULT_DELAY_TIERS);
    for (let i = 1; i < defaults.length; i++) {
      // Rounding up never more than ~3.3x the asked delay between two default tiers.
      expect((defaults[i] as number) / (defaults[i - 1] as number)).toBeLessThanOrEqual(10 / 3);
    }
    expect(defaults).toContain(300_000); // the async profile's cap is a tier
  });

  it('rejects what cannot be a tier, and negative delays', () => {
    for (const bad of [[], ['soon'], [0], [-5], ['0.2ms']]) {
      expect(() => parseDelayTiers(bad as never)).toThrow(/delayTiers/);
    }
    expect(() => pickDelayTier([{ delayMs: 1 }], -1)).toThrow(/delay/);
    expect(() => pickDelayTier([{ delayMs: 1 }], Number.NaN)).toThrow(/delay/);
    try {
      pickDelayTier([{ delayMs: 1 }], -1);
      expect.unreachable();
    } catch (error) {
      expect(isReprocessError(error, 'INVALID_ARGUMENT')).toBe(true);
    }
  });

  it('names tiers readably', () => {
    expect([250, 1000, 90_000, 120_000, 3_600_000].map(formatTier)).toEqual([
      '250ms',
      '1s',
      '90s',
      '2m',
      '1h',
    ]);
  });
});

// size 'max': lengths up to 3,000, past the 2,000 characters where the message is cut.
const text = fc.string({ unit: 'binary', maxLength: 3000, size: 'max' });
const historyArb: fc.Arbitrary<QuarantineHistory> = fc.record(
  {
    attempts: fc.integer({ min: 0, max: 1000 }),
    firstFailureAt: fc.integer({ min: 0, max: 4_000_000_000_000 }),
    lastFailureAt: fc.integer({ min: 0, max: 4_000_000_000_000 }),
    lastError: fc.record(
      { name: text, code: text, message: text },
      { requiredKeys: ['name', 'message'] },
    ),
    reason: fc.constantFrom(
      'non_retryable',
      'attempts_exhausted',
      'max_age',
      'poison',
      'key_missing',
    ) as fc.Arbitrary<QuarantineHistory['reason']>,
    source: fc.string({ minLength: 1, maxLength: 50 }),
    idempotencyKey: text,
    quarantinedAt: fc.integer({ min: 0, max: 4_000_000_000_000 }),
  },
  {
    requiredKeys: [
      'attempts',
      'firstFailureAt',
      'lastFailureAt',
      'lastError',
      'reason',
      'source',
      'quarantinedAt',
    ],
  },
);

function cut(history: QuarantineHistory): QuarantineHistory {
  const { message } = history.lastError;
  return message.length > MAX_ERROR_MESSAGE_LENGTH
    ? {
        ...history,
        lastError: {
          ...history.lastError,
          message: `${headOf(message, MAX_ERROR_MESSAGE_LENGTH)}…`,
        },
      }
    : history;
}

describe('history headers', () => {
  it('round-trip through the RabbitMQ headers (long messages cut)', () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        const codec = { prefix: 'x-reprocess-' };
        expect(decodeHistory(encodeHistory(history, codec), codec, 'fallback')).toEqual(
          cut(history),
        );
      }),
    );
  });

  it('round-trip through NATS headers, whose values never hold a line break', () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        const headers = encodeHistory(history, NATS_HISTORY_CODEC);
        for (const value of Object.values(headers)) expect(value).not.toMatch(/[\r\n]/);
        expect(decodeHistory(headers, NATS_HISTORY_CODEC, 'fallback')).toEqual(cut(history));
      }),
    );
  });

  it('survives an error message with a lone surrogate (it becomes U+FFFD)', () => {
    const history: QuarantineHistory = {
      attempts: 1,
      firstFailureAt: 1,
      lastFailureAt: 2,
      lastError: { name: 'E', message: 'half \uD800 pair' },
      reason: 'poison',
      source: 'orders',
      quarantinedAt: 3,
    };
    const headers = encodeHistory(history, NATS_HISTORY_CODEC);
    expect(decodeHistory(headers, NATS_HISTORY_CODEC, 'x').lastError.message).toBe(
      'half \uFFFD pair',
    );
  });

  it('gives a message without history one that says so, pointing back at the fallback source', () => {
    const h = decodeHistory({ tenant: 'acme' }, { prefix: 'x-reprocess-' }, 'orders');
    expect(h).toMatchObject({ reason: 'poison', source: 'orders', attempts: 0 });
    expect(h.lastError.message).toMatch(/no reprocess history/);
  });
});
