import { type Report, type ReportSection, textTable } from '../report/html-report.js';
import { barChart, histogramChart, lineChart } from '../report/svg-chart.js';
import { jitterStrategies, standardStrategies, strategyFromPolicy } from './catalogue.js';
import { type ContentionResult, simulateContention } from './contention-sim.js';
import {
  type DependencyResult,
  type DependencyScenario,
  simulateDependency,
} from './dependency-sim.js';
import type { SimStrategy } from './strategy.js';
import type { RetryBudget, RetryOptions } from '../retry/types.js';
import type { Clock } from '../clock.js';

export interface SimulationPlan {
  scenario: DependencyScenario;
  strategies?: SimStrategy[];
  /** Extra policy to compare (e.g. from `--config`). */
  configPolicy?: RetryOptions;
  /** The budget of the config's policy, built on the simulation's clock for each run. */
  configBudget?: { build: (clock: Clock) => RetryBudget; label: string };
  contention?: { clients: readonly number[]; opMs: number };
}

export interface SimulationResults {
  scenario: DependencyScenario;
  dependency: DependencyResult[];
  contention: ContentionResult[];
}

/** Runs every strategy through the dependency scenario and the contention study. */
export function runSimulation(plan: SimulationPlan): SimulationResults {
  const strategies = [...(plan.strategies ?? standardStrategies())];
  if (plan.configPolicy) {
    strategies.push(strategyFromPolicy('your config', plan.configPolicy, plan.configBudget));
  }
  const dependency = strategies.map((s) => simulateDependency(plan.scenario, s));
  const contention: ContentionResult[] = [];
  const study = plan.contention ?? { clients: [10, 50, 100], opMs: 5 };
  for (const clients of study.clients) {
    for (const s of jitterStrategies()) {
      contention.push(
        simulateContention({ clients, opMs: study.opMs, seed: plan.scenario.seed }, s),
      );
    }
  }
  return { scenario: plan.scenario, dependency, contention };
}

const ms = (v: number | null) => (v === null ? 'never' : Number.isFinite(v) ? Math.round(v) : '-');

const percent = (share: number) => `${(share * 100).toFixed(0)}%`;

/** The columns of the dependency table; its last one, peak load, is styled by each output. */
const DEPENDENCY_COLUMNS = [
  'strategy',
  'calls',
  'amplification',
  'success',
  'p50 ms',
  'p99 ms',
  'recovery ms',
  'peak load',
];

/** Every cell of a dependency row but the last (peak load). */
function dependencyCells(r: DependencyResult): Array<string | number> {
  return [
    r.strategy,
    r.calls,
    r.amplification.toFixed(2),
    `${(r.successRate * 100).toFixed(1)}%`,
    ms(r.p50Ms),
    ms(r.p99Ms),
    ms(r.recoveryMs),
  ];
}

/** The terminal tables. */
export function simulationTables(results: SimulationResults): string {
  const dep = textTable(
    DEPENDENCY_COLUMNS,
    results.dependency.map((r) => [...dependencyCells(r), percent(r.peakLoad)]),
  );
  const con = textTable(
    ['contention: strategy', 'clients', 'calls', 'calls/client', 'completion ms', 'gave up'],
    results.contention.map((r) => [
      r.strategy,
      r.clients,
      r.calls,
      (r.calls / r.clients).toFixed(1),
      Math.round(r.completionMs),
      r.gaveUp,
    ]),
  );
  return `${dep}\n\n${con}`;
}

/** The HTML report: load over time per strategy is the picture that explains jitter. */
export function simulationReport(results: SimulationResults): Report {
  const { scenario } = results;
  const bucketSec = (r: DependencyResult) => r.bucketMs / 1000;
  // 100 ms buckets are what the dependency enforces; half-second averages read better.
  const loadSeries = (rs: DependencyResult[]) =>
    rs.map((r) => {
      const per = Math.max(1, Math.round(500 / r.bucketMs));
      const points: Array<readonly [number, number]> = [];
      for (let i = 0; i < r.load.length; i += per) {
        let sum = 0;
        const slice = r.load.slice(i, i + per);
        for (const v of slice) sum += v;
        points.push([i * bucketSec(r), sum / slice.length] as const);
      }
      return { name: r.strategy, points };
    });
  const noBudget = results.dependency.filter((r) => !r.strategy.includes('+'));
  const budgeted = results.dependency.filter(
    (r) => r.strategy.startsWith('full jitter') || r.strategy.startsWith('immediate'),
  );
  const fault = scenario.outage ?? scenario.surge;
  const band = fault
    ? {
        from: fault.startMs / 1000,
        to: fault.endMs / 1000,
        label: scenario.outage ? 'outage' : 'surge',
      }
    : undefined;
  const reference = {
    y: scenario.capacityPerSecond,
    label: `capacity ${scenario.capacityPerSecond}/s`,
  };
  const clients = [...new Set(results.contention.map((r) => r.clients))];
  const jitterNames = [...new Set(results.contention.map((r) => r.strategy))];
  const sections: ReportSection[] = [
    {
      heading: 'Load on the dependency',
      paragraphs: [
        `${scenario.requests} requests at ${scenario.ratePerSecond}/s against a dependency that serves ${scenario.capacityPerSecond} calls/s` +
          (scenario.outage
            ? `, down from ${scenario.outage.startMs / 1000}s to ${scenario.outage.endMs / 1000}s.`
            : '.'),
        'Retries without a budget multiply the load exactly when the dependency can take the least; jitter spreads the retries, a budget caps them.',
      ],
      charts: [
        lineChart({
          title: 'Calls per second, by strategy (no budget)',
          xLabel: 'time (s)',
          yLabel: 'calls / s',
          series: loadSeries(noBudget),
          reference,
          ...(band ? { band } : {}),
        }),
        lineChart({
          title: 'Calls per second with and without a retry budget',
          xLabel: 'time (s)',
          yLabel: 'calls / s',
          series: loadSeries(budgeted),
          reference,
          ...(band ? { band } : {}),
        }),
      ],
    },
    {
      heading: 'Cost and outcome per strategy',
      tables: [
        {
          columns: DEPENDENCY_COLUMNS,
          rows: results.dependency.map((r) => [
            ...dependencyCells(r),
            { value: percent(r.peakLoad), tone: r.peakLoad > 1.5 ? 'bad' : 'good' },
          ]),
        },
      ],
      charts: [
        barChart({
          title: 'Amplification (calls per request)',
          yLabel: 'calls / request',
          categories: ['no budget', 'token bucket', 'ratio budget'],
          series: [
            'immediate retry',
            'exponential, no jitter',
            'full jitter',
            'equal jitter',
            'decorrelated jitter',
          ].map((shape) => ({
            name: shape,
            values: ['', ' + token bucket', ' + ratio budget'].map(
              (suffix) =>
                results.dependency.find((r) => r.strategy === `${shape}${suffix}`)?.amplification ??
                0,
            ),
          })),
        }),
        histogramChart({
          title: 'Retry delay distribution per jitter',
          xLabel: 'delay (ms)',
          series: noBudget
            .filter((r) => r.delaySample.length > 0 && /jitter$/.test(r.strategy))
            .map((r) => ({ name: r.strategy, values: r.delaySample })),
        }),
      ],
    },
    {
      heading: 'Contention: many clients updating one row',
      paragraphs: [
        'Every client reads a row and writes it back with optimistic concurrency; a conflict means backing off and trying again. Without jitter the clients that collided retry in lockstep and collide again.',
      ],
      tables: [
        {
          columns: ['strategy', 'clients', 'calls', 'calls/client', 'completion ms'],
          rows: results.contention.map((r) => [
            r.strategy,
            r.clients,
            r.calls,
            (r.calls / r.clients).toFixed(1),
            Math.round(r.completionMs),
          ]),
        },
      ],
      charts: [
        barChart({
          title: 'Total calls to finish, by number of clients',
          yLabel: 'calls',
          categories: clients.map((c) => `${c} clients`),
          series: jitterNames.map((name) => ({
            name,
            values: clients.map(
              (c) =>
                results.contention.find((r) => r.clients === c && r.strategy === name)?.calls ?? 0,
            ),
          })),
        }),
        barChart({
          title: 'Time until the last client finished (ms)',
          yLabel: 'ms',
          categories: clients.map((c) => `${c} clients`),
          series: jitterNames.map((name) => ({
            name,
            values: clients.map(
              (c) =>
                results.contention.find((r) => r.clients === c && r.strategy === name)
                  ?.completionMs ?? 0,
            ),
          })),
        }),
      ],
    },
  ];
  return {
    title: 'reprocess simulate: retries under a dependency outage',
    subtitle: `seed ${scenario.seed} · deterministic for a seed`,
    sections,
  };
}
