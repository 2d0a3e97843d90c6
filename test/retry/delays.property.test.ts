import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/random.js';
import {
  type BackoffKind,
  baseDelay,
  delaySequence,
  nextDelay,
  normalizeBackoff,
} from '../../src/retry/backoff.js';
import { computeDelay } from '../../src/retry/compute-delay.js';
import { type JitterKind, jitterBounds } from '../../src/retry/jitter.js';

const kinds = fc.constantFrom<BackoffKind>('constant', 'linear', 'exponential');
const jitters = fc.constantFrom<JitterKind>('none', 'full', 'equal', 'decorrelated');
const policy = fc.record({
  kind: kinds,
  jitter: jitters,
  base: fc.integer({ min: 0, max: 60_000 }),
  factor: fc.double({ min: 1, max: 5, noNaN: true }),
  cap: fc.integer({ min: 0, max: 600_000 }),
});

describe('delay properties', () => {
  it('every delay lies within its formula bounds and never exceeds cap', () => {
    fc.assert(
      fc.property(
        policy,
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 600_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (p, n, prev, r) => {
          const o = normalizeBackoff(p);
          const d = baseDelay(o, n);
          const [delay] = nextDelay(o, { n, prev }, () => r);
          const { min, max } = jitterBounds(o.jitter, { d, base: o.base, cap: o.cap, prev });
          expect(delay).toBeGreaterThanOrEqual(min);
          expect(delay).toBeLessThanOrEqual(max);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(o.cap);
          // the un-jittered delay itself follows the formula
          const raw =
            o.kind === 'constant'
              ? o.base
              : o.kind === 'linear'
                ? o.base * (n + 1)
                : o.base * o.factor ** n;
          expect(d).toBe(Math.min(o.cap, raw));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('a whole walked sequence and computeDelay stay in [0, cap]', () => {
    fc.assert(
      fc.property(policy, fc.integer(), fc.integer({ min: 0, max: 30 }), (p, seed, index) => {
        const o = normalizeBackoff(p);
        for (const d of delaySequence(o, 30, seededRandom(seed))) {
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(o.cap);
        }
        const c = computeDelay(
          { backoff: p.kind, jitter: p.jitter, base: p.base, factor: p.factor, cap: p.cap },
          index,
          seededRandom(seed),
        );
        expect(c).toBeGreaterThanOrEqual(0);
        expect(c).toBeLessThanOrEqual(o.cap);
      }),
      { numRuns: 500 },
    );
  });
});
