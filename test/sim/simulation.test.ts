import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/random.js';
import { delaySequence } from '../../src/retry/backoff.js';
import { simulateContention } from '../../src/sim/contention-sim.js';
import { type DependencyScenario, simulateDependency } from '../../src/sim/dependency-sim.js';
import { defineStrategy } from '../../src/sim/strategy.js';
import { InvalidArgumentError } from '../../src/errors.js';

const scenario: DependencyScenario = {
  requests: 4000,
  ratePerSecond: 200,
  capacityPerSecond: 300,
  latencyMs: 20,
  outage: { startMs: 5000, endMs: 10_000 },
  seed: 42,
};

const exp = (jitter: 'none' | 'full' | 'equal' | 'decorrelated', maxAttempts = 6) =>
  defineStrategy({
    name: jitter,
    maxAttempts,
    backoff: { kind: 'exponential', base: 100, cap: 5000, jitter },
  });

describe('dependency simulation', () => {
  it('ends every request exactly once: successes plus give-ups equal requests', () => {
    for (const s of [
      exp('none'),
      exp('full'),
      defineStrategy({ name: 'no retry', maxAttempts: 1 }),
    ]) {
      const r = simulateDependency(scenario, s);
      const gaveUp = r.gaveUp.attempts + r.gaveUp.budget + r.gaveUp.deadline + r.gaveUp.notRetried;
      expect(r.succeeded + gaveUp).toBe(scenario.requests);
      expect(r.calls).toBeGreaterThanOrEqual(scenario.requests);
      expect(r.calls).toBeLessThanOrEqual(scenario.requests * s.maxAttempts);
      expect(r.load.reduce((a, b) => a + b, 0) * (r.bucketMs / 1000)).toBeCloseTo(r.calls, 6);
    }
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = simulateDependency(scenario, exp('full'));
    const b = simulateDependency(scenario, exp('full'));
    const c = simulateDependency({ ...scenario, seed: 43 }, exp('full'));
    expect(b).toEqual(a);
    expect(c.calls).not.toBe(a.calls);
  });

  it('draws its delays from the retry engine formulas (no second copy)', () => {
    // With one request that always fails, the delays drawn are exactly the engine's sequence
    // for the same seed: the simulation feeds the engine's nextDelay state machine.
    const s = exp('decorrelated', 6);
    const r = simulateDependency(
      {
        requests: 1,
        ratePerSecond: 1,
        capacityPerSecond: 10,
        latencyMs: 0,
        outage: { startMs: 0, endMs: 1e9 },
        seed: 9,
      },
      s,
    );
    expect(r.delaySample).toEqual(delaySequence(s.backoff, 5, seededRandom(9)));
  });

  it('counts attempts past 65,535 without wrapping: never more calls than max attempts', () => {
    const r = simulateDependency(
      {
        requests: 1,
        ratePerSecond: 1,
        capacityPerSecond: 1000,
        latencyMs: 1,
        outage: { startMs: 0, endMs: 100_000 },
        seed: 1,
      },
      defineStrategy({
        name: 'many',
        maxAttempts: 70_000,
        backoff: { kind: 'constant', base: 0, cap: 0, jitter: 'none' },
      }),
    );
    expect(r.calls).toBe(70_000);
    expect(r.succeeded).toBe(0);
    expect(r.gaveUp.attempts).toBe(1);
  });

  it('without retries a request fails exactly when its one call fails', () => {
    const r = simulateDependency(scenario, defineStrategy({ name: 'no retry', maxAttempts: 1 }));
    expect(r.calls).toBe(scenario.requests);
    expect(r.amplification).toBe(1);
    expect(r.gaveUp.notRetried).toBe(scenario.requests - r.succeeded);
  });

  it('recovers when the calls end soon after the fault, rather than "never"', () => {
    // 1,000 requests at 1,000/s end about when the outage does (0.5 s to 0.9 s), or before
    // it does (to 2 s): no call fails after it, so it recovered at once.
    const noRetry = defineStrategy({ name: 'no retry', maxAttempts: 1 });
    for (const endMs of [900, 2000]) {
      const short = { ...scenario, requests: 1000, ratePerSecond: 1000, capacityPerSecond: 1500 };
      const r = simulateDependency({ ...short, outage: { startMs: 500, endMs } }, noRetry);
      expect(r.recoveryMs, `outage to ${endMs} ms`).toBe(0);
    }
  });

  it('serves a capacity under one call a bucket: 9 calls/s serve 9 of 10 buckets, not none', () => {
    const noRetry = defineStrategy({ name: 'no retry', maxAttempts: 1 });
    const light = { requests: 200, ratePerSecond: 1, latencyMs: 0, seed: 7 };
    const nine = simulateDependency({ ...light, capacityPerSecond: 9 }, noRetry);
    const ten = simulateDependency({ ...light, capacityPerSecond: 10 }, noRetry);
    // At 1 request/s, a call fails only when it lands in a bucket that already had one, or
    // (at 9/s) in the one bucket in ten that serves none.
    expect(nine.successRate).toBeGreaterThan(0.75);
    expect(nine.successRate).toBeLessThanOrEqual(ten.successRate);
    // Whole capacities per bucket are served exactly as before.
    const whole = simulateDependency({ ...scenario, capacityPerSecond: 300 }, noRetry);
    expect(whole).toEqual(simulateDependency(scenario, noRetry));
  });

  it('refuses arrivals spread over more than a day of simulated time, and a latency over an hour', () => {
    expect(() =>
      simulateDependency({ ...scenario, requests: 3, ratePerSecond: 1e-7 }, exp('full')),
    ).toThrow(/arrive over about .* s of simulated time/);
    expect(() => simulateDependency({ ...scenario, latencyMs: 4e6 }, exp('full'))).toThrow(
      /latencyMs/,
    );
  });

  it('rejects a scenario that makes no sense, naming the field', () => {
    expect(() => simulateDependency({ ...scenario, capacityPerSecond: 0 }, exp('full'))).toThrow(
      /capacityPerSecond/,
    );
    expect(() =>
      simulateDependency({ ...scenario, outage: { startMs: 5, endMs: 1 } }, exp('full')),
    ).toThrow(InvalidArgumentError);
  });
});

describe('contention simulation', () => {
  const contention = (jitter: 'none' | 'full' | 'equal' | 'decorrelated') =>
    defineStrategy({
      name: jitter,
      maxAttempts: 100_000,
      backoff: { kind: 'exponential', base: 5, cap: 2000, jitter },
    });

  it('finishes every client and, without jitter, costs n(n+1)/2 calls (one winner per round)', () => {
    const r = simulateContention({ clients: 20, opMs: 5, seed: 1 }, contention('none'));
    expect(r.gaveUp).toBe(0);
    expect(r.calls).toBe((20 * 21) / 2);
  });

  it('full jitter makes fewer calls than no jitter for 10, 50 and 100 clients', () => {
    for (const clients of [10, 50, 100]) {
      const none = simulateContention({ clients, opMs: 5, seed: 7 }, contention('none'));
      const full = simulateContention({ clients, opMs: 5, seed: 7 }, contention('full'));
      expect(full.gaveUp).toBe(0);
      expect(full.calls).toBeLessThan(none.calls);
    }
  });
});
