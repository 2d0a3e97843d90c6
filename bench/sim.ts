/**
 * `npm run bench:sim`: how fast the discrete-event simulator runs. Goal: one million client
 * requests through the outage scenario in under two seconds on this machine. The floor beside
 * it is the same event loop with no retry (one call per request), measured in the same run.
 */
import { performance } from 'node:perf_hooks';
import { createTokenBucketBudget } from '../src/retry/token-bucket-budget.js';
import { textTable } from '../src/report/html-report.js';
import { simulateDependency, type DependencyScenario } from '../src/sim/dependency-sim.js';
import { defineStrategy, type SimStrategy } from '../src/sim/strategy.js';

const requests = Number(process.env.SIM_REQUESTS ?? 1_000_000);
const scenario: DependencyScenario = {
  requests,
  ratePerSecond: 10_000,
  capacityPerSecond: 15_000,
  latencyMs: 20,
  outage: { startMs: 30_000, endMs: 33_000 },
  seed: 1,
};

const strategies: SimStrategy[] = [
  defineStrategy({ name: 'no retry (floor)', maxAttempts: 1 }),
  defineStrategy({ name: 'exponential, no jitter', maxAttempts: 5, backoff: { jitter: 'none' } }),
  defineStrategy({ name: 'full jitter', maxAttempts: 5, backoff: { jitter: 'full' } }),
  defineStrategy({
    name: 'decorrelated jitter',
    maxAttempts: 5,
    backoff: { jitter: 'decorrelated' },
  }),
  defineStrategy({
    name: 'full jitter + token bucket',
    maxAttempts: 5,
    backoff: { jitter: 'full' },
    budget: () => createTokenBucketBudget(),
  }),
];

// Warm up the JIT on a small run first.
for (const s of strategies) simulateDependency({ ...scenario, requests: 20_000 }, s);

const rows = strategies.map((s) => {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const r = simulateDependency(scenario, s);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return [
    s.name,
    r.requests,
    r.calls,
    Math.round(ms),
    Math.round(cpuMs),
    `${(((r.calls / ms) * 1000) / 1e6).toFixed(2)}M`,
    ms < 2000 ? 'yes' : 'NO',
  ];
});
console.log(
  `bench:sim — ${requests.toLocaleString('en')} client requests per strategy, outage 30s-33s\n`,
);
console.log(
  'wall ms is what a user waits; cpu ms is this process alone (the two differ when other work shares the cores)\n',
);
console.log(
  textTable(['strategy', 'requests', 'calls', 'wall ms', 'cpu ms', 'calls/s', 'under 2 s'], rows),
);
