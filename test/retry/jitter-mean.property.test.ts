import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/random.js';
import { applyJitter } from '../../src/retry/jitter.js';

/**
 * Statistical check of each jitter: over many seeded draws the empirical mean is within a
 * small tolerance of the analytic mean. With 20 000 draws the standard error of a uniform
 * draw's mean is about 0.2% of its width; the tolerance is 1.5% of the width (over 7
 * standard errors), so a correct formula fails with negligible probability and a wrong one
 * (a different midpoint) fails reliably.
 */
const SAMPLES = 20_000;
const TOLERANCE = 0.015;

function empiricalMean(draw: () => number): number {
  let sum = 0;
  for (let i = 0; i < SAMPLES; i++) sum += draw();
  return sum / SAMPLES;
}

/** E[min(cap, U(lo, hi))]. */
function cappedUniformMean(lo: number, hi: number, cap: number): number {
  if (hi <= cap) return (lo + hi) / 2;
  if (lo >= cap) return cap;
  const below = (cap - lo) / (hi - lo);
  return below * ((lo + cap) / 2) + (1 - below) * cap;
}

const params = fc.record({
  d: fc.integer({ min: 1, max: 100_000 }),
  base: fc.integer({ min: 1, max: 5_000 }),
  prev: fc.integer({ min: 1, max: 50_000 }),
  cap: fc.integer({ min: 1, max: 200_000 }),
  seed: fc.integer(),
});

describe('jitter means', () => {
  it('none is exactly d; full d/2; equal 3d/4; decorrelated the mean of min(cap, U(base, 3 prev))', () => {
    fc.assert(
      fc.property(params, ({ d, base, prev, cap, seed }) => {
        const input = { d, base, cap, prev };
        const random = seededRandom(seed);
        expect(empiricalMean(() => applyJitter('none', input, random))).toBe(d);
        expect(
          Math.abs(empiricalMean(() => applyJitter('full', input, random)) - d / 2),
        ).toBeLessThan(TOLERANCE * d);
        expect(
          Math.abs(empiricalMean(() => applyJitter('equal', input, random)) - (3 * d) / 4),
        ).toBeLessThan(TOLERANCE * (d / 2));
        const hi = Math.max(base, prev * 3);
        const expected = cappedUniformMean(base, hi, cap);
        const width = Math.max(1, hi - base);
        expect(
          Math.abs(empiricalMean(() => applyJitter('decorrelated', input, random)) - expected),
        ).toBeLessThan(TOLERANCE * width);
      }),
      { numRuns: 25 },
    );
  });
});
