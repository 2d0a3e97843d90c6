import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';
import { delaySequence } from '../../src/retry/backoff.js';
import { computeDelay } from '../../src/retry/compute-delay.js';
import { profiles } from '../../src/retry/profiles.js';
import { resolveRetryOptions } from '../../src/retry/resolve-options.js';
import { sequence } from './helpers.js';

describe('resolveRetryOptions', () => {
  it('fills the documented defaults', () => {
    const resolved = resolveRetryOptions();
    expect(resolved.maxAttempts).toBe(3);
    expect(resolved.backoff).toEqual({
      kind: 'exponential',
      base: 100,
      factor: 2,
      cap: 30_000,
      jitter: 'full',
    });
    expect(resolved.deadline).toBeUndefined();
    expect(resolved.attemptTimeout).toBeUndefined();
    expect(resolved.random).toBe(Math.random);
  });

  it('converts durations to ms', () => {
    const resolved = resolveRetryOptions({
      base: '250ms',
      cap: '1m',
      deadline: '30s',
      attemptTimeout: 1500,
    });
    expect(resolved.backoff.base).toBe(250);
    expect(resolved.backoff.cap).toBe(60_000);
    expect(resolved.deadline).toBe(30_000);
    expect(resolved.attemptTimeout).toBe(1500);
  });

  it('names the field of a bad value', () => {
    expect(() => resolveRetryOptions({ cap: '40d' })).toThrow(/cap must be at most/);
    expect(() => resolveRetryOptions({ base: true as never })).toThrow(/base/);
    expect(() => resolveRetryOptions({ budget: {} as never })).toThrow(/budget/);
    expect(() => resolveRetryOptions({ clock: {} as never })).toThrow(/clock/);
    expect(() => resolveRetryOptions({ signal: 'x' as never })).toThrow(/signal/);
    expect(() => resolveRetryOptions(null as never)).toThrow(InvalidArgumentError);
  });

  it('resolves a frozen object once', () => {
    const frozen = Object.freeze({ maxAttempts: 4 });
    expect(resolveRetryOptions(frozen)).toBe(resolveRetryOptions(frozen));
    const open = { maxAttempts: 4 };
    const first = resolveRetryOptions(open);
    open.maxAttempts = 6;
    expect(resolveRetryOptions(open).maxAttempts).toBe(6);
    expect(first.maxAttempts).toBe(4);
  });
});

describe('computeDelay', () => {
  it('is the delay before attempt retryIndex + 2 under the policy', () => {
    const options = { base: 100, cap: 1000, jitter: 'none' } as const;
    expect([0, 1, 2, 3, 4].map((i) => computeDelay(options, i))).toEqual([
      100, 200, 400, 800, 1000,
    ]);
    expect(computeDelay({ ...options, backoff: 'linear' }, 2)).toBe(300);
    expect(computeDelay({ ...options, jitter: 'full' }, 2, sequence(0.25))).toBe(100);
    expect(computeDelay({ ...options, jitter: 'equal' }, 1, sequence(0.5))).toBe(150);
  });

  it('walks the decorrelated sequence with the given random source', () => {
    const options = { base: 100, cap: 100_000, jitter: 'decorrelated' } as const;
    const walked = delaySequence(resolveRetryOptions(options).backoff, 6, seededRandom(9));
    expect(computeDelay(options, 5, seededRandom(9))).toBe(walked[5]);
    expect(computeDelay(options, 0, sequence(0.5))).toBe(200);
  });

  it('uses the policy random when none is given', () => {
    expect(computeDelay({ base: 100, jitter: 'full', random: sequence(0.5) }, 0)).toBe(50);
  });

  it('rejects a bad retry index or policy', () => {
    expect(() => computeDelay({}, -1)).toThrow(InvalidArgumentError);
    expect(() => computeDelay({}, 1.5)).toThrow(/retryIndex/);
    expect(() => computeDelay({ jitter: 'sideways' as never }, 0)).toThrow(/jitter/);
  });

  it('stays finite with base 0 and a huge retry index', () => {
    expect(computeDelay({ base: 0, jitter: 'none' }, 5000)).toBe(0);
  });
});

describe('profiles', () => {
  it('sync: few attempts, short delays, a deadline and an attempt timeout', () => {
    const sync = resolveRetryOptions(profiles.sync);
    expect(sync.maxAttempts).toBe(3);
    expect(sync.backoff.cap).toBeLessThanOrEqual(1000);
    expect(sync.deadline).toBe(2000);
    expect(sync.attemptTimeout).toBe(1000);
  });

  it('async: many attempts, delays up to minutes, no deadline', () => {
    const async = resolveRetryOptions(profiles.async);
    expect(async.maxAttempts).toBe(10);
    expect(async.backoff.base).toBe(2000);
    expect(async.backoff.cap).toBe(300_000);
    expect(async.backoff.jitter).toBe('full');
    expect(async.deadline).toBeUndefined();
  });

  it('are frozen', () => {
    expect(Object.isFrozen(profiles)).toBe(true);
    expect(Object.isFrozen(profiles.sync)).toBe(true);
    expect(() => {
      (profiles.sync as { maxAttempts?: number }).maxAttempts = 99;
    }).toThrow(TypeError);
  });
});
