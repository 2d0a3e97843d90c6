import { describe, expect, it } from 'vitest';
import {
  type BackoffOptions,
  baseDelay,
  delaySequence,
  nextDelay,
  normalizeBackoff,
} from '../../src/retry/backoff.js';
import { applyJitter, jitterBounds } from '../../src/retry/jitter.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { sequence } from './helpers.js';

const opts = (o: Partial<BackoffOptions>) =>
  normalizeBackoff({ kind: 'exponential', base: 100, cap: 10_000, jitter: 'none', ...o });

describe('backoff formulas (DESIGN.md: d = min(cap, base * factor^n))', () => {
  it('constant is base at every retry, capped', () => {
    const o = opts({ kind: 'constant', base: 250 });
    expect([0, 1, 5, 40].map((n) => baseDelay(o, n))).toEqual([250, 250, 250, 250]);
    expect(baseDelay(opts({ kind: 'constant', base: 250, cap: 200 }), 3)).toBe(200);
  });

  it('linear is base * (n + 1), capped', () => {
    const o = opts({ kind: 'linear', base: 100, cap: 350 });
    expect([0, 1, 2, 3, 4].map((n) => baseDelay(o, n))).toEqual([100, 200, 300, 350, 350]);
  });

  it('exponential is base * factor^n with the default factor 2, capped', () => {
    const o = opts({ base: 100, cap: 1000 });
    expect(o.factor).toBe(2);
    expect([0, 1, 2, 3, 4, 10].map((n) => baseDelay(o, n))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  it('exponential from a zero base stays 0 however far it goes (never NaN), and so does its sequence', () => {
    const o = opts({ base: 0, cap: 1000 });
    expect([0, 1, 1023, 1024, 5000].map((n) => baseDelay(o, n))).toEqual([0, 0, 0, 0, 0]);
    expect(delaySequence(o, 1100, () => 0.5).every((d) => d === 0)).toBe(true);
  });

  it('exponential honours another factor', () => {
    const o = opts({ base: 10, factor: 3, cap: 1e9 });
    expect([0, 1, 2, 3].map((n) => baseDelay(o, n))).toEqual([10, 30, 90, 270]);
  });

  it('normalizeBackoff rejects bad values with InvalidArgumentError', () => {
    expect(() => opts({ base: -1 })).toThrow(InvalidArgumentError);
    expect(() => opts({ cap: Number.NaN })).toThrow(InvalidArgumentError);
    expect(() => opts({ factor: 0.5 })).toThrow(/factor/);
  });
});

describe('jitter formulas', () => {
  const input = { d: 800, base: 100, cap: 1000, prev: 300 };

  it('none returns d', () => {
    expect(applyJitter('none', input, sequence(0.3))).toBe(800);
  });

  it('full is random(0, d)', () => {
    expect(applyJitter('full', input, sequence(0))).toBe(0);
    expect(applyJitter('full', input, sequence(0.25))).toBe(200);
    expect(applyJitter('full', input, sequence(0.5))).toBe(400);
  });

  it('equal is d/2 + random(0, d/2)', () => {
    expect(applyJitter('equal', input, sequence(0))).toBe(400);
    expect(applyJitter('equal', input, sequence(0.5))).toBe(600);
    expect(applyJitter('equal', input, sequence(0.999))).toBeCloseTo(799.6, 6);
  });

  it('decorrelated is min(cap, random(base, prev * 3))', () => {
    // random(100, 900)
    expect(applyJitter('decorrelated', input, sequence(0))).toBe(100);
    expect(applyJitter('decorrelated', input, sequence(0.5))).toBe(500);
    // capped: prev 500 -> random(100, 1500) -> 1300 -> 1000
    expect(applyJitter('decorrelated', { ...input, prev: 500 }, sequence(0.857))).toBe(1000);
  });

  it('jitterBounds describe each formula', () => {
    expect(jitterBounds('none', input)).toEqual({ min: 800, max: 800 });
    expect(jitterBounds('full', input)).toEqual({ min: 0, max: 800 });
    expect(jitterBounds('equal', input)).toEqual({ min: 400, max: 800 });
    expect(jitterBounds('decorrelated', input)).toEqual({ min: 100, max: 900 });
  });

  it('decorrelated walks from prev = base, feeding each delay into the next', () => {
    const o = opts({ jitter: 'decorrelated', base: 100, cap: 100_000 });
    // 0.5 each time: random(100, 300) = 200, random(100, 600) = 350, random(100, 1050) = 575
    expect(delaySequence(o, 3, sequence(0.5))).toEqual([200, 350, 575]);
  });

  it('nextDelay applies jitter to the capped exponential delay', () => {
    const o = opts({ jitter: 'full', base: 100, cap: 500 });
    const [d0, s1] = nextDelay(o, { n: 0, prev: 100 }, sequence(0.5));
    expect(d0).toBe(50);
    const [d3] = nextDelay(o, { n: 3, prev: s1.prev }, sequence(0.5));
    expect(d3).toBe(250); // min(500, 800) / 2
  });
});
