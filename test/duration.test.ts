import { describe, expect, it } from 'vitest';
import { isDurationString, toMs } from '../src/duration.js';
import { InvalidArgumentError } from '../src/errors.js';

describe('toMs', () => {
  it('reads numbers and the duration forms', () => {
    expect(toMs(250)).toBe(250);
    expect(toMs('250ms')).toBe(250);
    expect(toMs('1.5s')).toBe(1500);
    expect(toMs(' 5m ')).toBe(300_000);
    expect(toMs('24h')).toBe(86_400_000);
    expect(toMs('2d')).toBe(172_800_000);
  });

  it('refuses a duration string too long to be a finite number, naming the field', () => {
    const long = `${'9'.repeat(400)}h`;
    expect(isDurationString(long)).toBe(false);
    expect(() => toMs(long, 'idempotency.ttl')).toThrow(InvalidArgumentError);
    expect(() => toMs(long, 'idempotency.ttl')).toThrow(/^idempotency\.ttl is too long a duration/);
  });

  it('refuses what is not a duration', () => {
    for (const bad of ['', '5', '5 parsecs', '-1s', Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      expect(() => toMs(bad, 'lease'), String(bad)).toThrow(/^lease /);
    }
    // A bare number as text is told to carry its unit, not that it must be milliseconds.
    expect(() => toMs('5', '--older-than')).toThrow(
      '--older-than must be a duration with its unit, such as 250ms, 30s, 5m, 24h; got "5"',
    );
  });
});
