import { describe, expect, it } from 'vitest';
import { standardStrategies } from '../../src/sim/catalogue.js';
import { type DependencyScenario, simulateDependency } from '../../src/sim/dependency-sim.js';

const scenario: DependencyScenario = {
  requests: 6000,
  ratePerSecond: 200,
  capacityPerSecond: 300,
  latencyMs: 20,
  outage: { startMs: 10_000, endMs: 13_000 },
  seed: 3,
};

describe('strategy catalogue', () => {
  const strategies = standardStrategies();
  const byName = new Map(strategies.map((s) => [s.name, s]));
  const named = (name: string) => {
    const s = byName.get(name);
    if (!s) throw new Error(`no strategy ${name}`);
    return s;
  };

  it('covers every jitter with and without each budget, plus both profiles', () => {
    for (const shape of [
      'immediate retry',
      'exponential, no jitter',
      'full jitter',
      'equal jitter',
      'decorrelated jitter',
    ]) {
      for (const suffix of ['', ' + token bucket', ' + ratio budget']) {
        expect(byName.has(`${shape}${suffix}`)).toBe(true);
      }
    }
    expect(byName.has('no retry')).toBe(true);
    expect(byName.has('sync profile')).toBe(true);
    expect(byName.has('async profile')).toBe(true);
  });

  it('a retry budget lowers the peak load and the calls made during an outage', () => {
    for (const shape of ['immediate retry', 'exponential, no jitter', 'full jitter']) {
      const free = simulateDependency(scenario, named(shape));
      for (const suffix of [' + token bucket', ' + ratio budget']) {
        const budgeted = simulateDependency(scenario, named(`${shape}${suffix}`));
        expect(budgeted.peakLoad).toBeLessThan(free.peakLoad);
        expect(budgeted.calls).toBeLessThan(free.calls);
        expect(budgeted.gaveUp.budget).toBeGreaterThan(0);
      }
    }
  });
});
