import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/load-config.js';
import { budgetFromConfig, retryOptionsFromConfig } from '../../config/from-config.js';
import { toMs } from '../../duration.js';
import { isReprocessError } from '../../errors.js';
import { renderReport } from '../../report/html-report.js';
import type { DependencyScenario } from '../../sim/dependency-sim.js';
import {
  type SimulationPlan,
  runSimulation,
  simulationReport,
  simulationTables,
} from '../../sim/run-simulation.js';
import type { RetryOptions } from '../../retry/types.js';
import { outPathProblem, writeReport } from '../files.js';
import type { CliIo } from '../io.js';

const USAGE = `usage: reprocess simulate [options]

Compares retry strategies (no retry, immediate, exponential with each jitter, with and
without a retry budget, the sync and async profiles) under a dependency outage, and the
contention study (many clients updating one row). Deterministic for a seed.

options:
  --requests N        logical requests (default 20000)
  --rate N            new requests per second (default 200)
  --capacity N        calls per second the dependency serves (default 300)
  --latency MS        time a call takes (default 20ms)
  --outage A-B        every call fails from A to B (default 20s-25s)
  --overload A-B:F    instead of an outage, arrivals multiplied by F from A to B (e.g. 20s-40s:2)
  --clients LIST      contention study sizes, each 1..10000 (default 10,50,100)
  --config FILE       add the retry policy of a config file as a strategy
  --seed N            random seed (default 1)
  --out FILE          HTML report path (default ./reprocess-simulate.html)
  --json              print the numbers as JSON instead of tables
`;

class UsageError extends Error {}

function window(text: string, flag: string): { startMs: number; endMs: number } {
  const [a, b] = text.split('-');
  if (a === undefined || b === undefined)
    throw new UsageError(`${flag} takes START-END, e.g. 20s-40s`);
  const startMs = toMs(/^\d+(\.\d+)?$/.test(a) ? Number(a) : a, flag);
  const endMs = toMs(/^\d+(\.\d+)?$/.test(b) ? Number(b) : b, flag);
  if (!(endMs > startMs)) throw new UsageError(`${flag}: the end must come after the start`);
  return { startMs, endMs };
}

function positive(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0)
    throw new UsageError(`${flag} must be a number > 0, got ${text}`);
  return v;
}

/** `--seed`: a whole number >= 0 (default 1). */
function wholeSeed(text: string | undefined): number {
  if (text === undefined) return 1;
  const v = Number(text);
  // The generator takes 32 bits: a larger seed would silently repeat a smaller one's run.
  if (!/^\d+$/.test(text) || v > 0xffff_ffff) {
    throw new UsageError(`--seed must be a whole number from 0 to 4294967295, got ${text}`);
  }
  return v;
}

/** `reprocess simulate`: see USAGE. */
export async function run(args: string[], io: CliIo): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        requests: { type: 'string' },
        rate: { type: 'string' },
        capacity: { type: 'string' },
        latency: { type: 'string' },
        outage: { type: 'string' },
        overload: { type: 'string' },
        clients: { type: 'string' },
        config: { type: 'string' },
        seed: { type: 'string' },
        out: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    io.err(`reprocess simulate: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  let scenario: DependencyScenario;
  let clients: number[];
  try {
    const requests = positive(values.requests as string | undefined, '--requests', 20_000);
    if (!Number.isInteger(requests)) throw new UsageError('--requests must be a whole number');
    scenario = {
      requests,
      ratePerSecond: positive(values.rate as string | undefined, '--rate', 200),
      capacityPerSecond: positive(values.capacity as string | undefined, '--capacity', 300),
      latencyMs:
        values.latency === undefined
          ? 20
          : toMs(
              /^\d+$/.test(values.latency as string)
                ? Number(values.latency)
                : (values.latency as string),
              '--latency',
            ),
      seed: wholeSeed(values.seed as string | undefined),
    };
    if (values.overload !== undefined) {
      const [span, factor] = (values.overload as string).split(':');
      scenario.surge = {
        ...window(span ?? '', '--overload'),
        factor: positive(factor ?? '2', '--overload factor', 2),
      };
    }
    // Both when both are given; the default outage only when neither is.
    if (values.outage !== undefined || values.overload === undefined) {
      scenario.outage = window((values.outage as string | undefined) ?? '20s-25s', '--outage');
    }
    clients = ((values.clients as string | undefined) ?? '10,50,100').split(',').map((c) => {
      const n = Number(c);
      // The study without jitter costs about n^2 / 2 calls: 10,000 clients take seconds,
      // 100,000 would take most of an hour.
      if (!Number.isInteger(n) || n < 1 || n > 10_000)
        throw new UsageError(`--clients takes whole numbers 1..10000, got ${c}`);
      return n;
    });
  } catch (error) {
    if (error instanceof UsageError || isReprocessError(error, 'INVALID_ARGUMENT')) {
      io.err(`reprocess simulate: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  const out = resolve((values.out as string | undefined) ?? 'reprocess-simulate.html');
  const outProblem = await outPathProblem(out);
  if (outProblem !== undefined) {
    io.err(`reprocess simulate: --out ${out}: ${outProblem}\n\n${USAGE}`);
    return 2;
  }
  let configPolicy: RetryOptions | undefined;
  let configBudget: SimulationPlan['configBudget'];
  if (values.config !== undefined) {
    try {
      const policy = (await loadConfig(values.config as string)).retry_policy;
      configPolicy = retryOptionsFromConfig(policy);
      const budget = policy?.budget;
      // On the simulation's clock, anew for each run: the policy's own budget object
      // lives on the real clock and would be shared by every strategy's run.
      if (budget !== undefined) {
        configBudget = {
          build: (clock) => budgetFromConfig(budget, clock),
          label: budget.type === 'ratio' ? 'ratio' : 'token bucket',
        };
      }
    } catch (error) {
      if (isReprocessError(error)) {
        io.err(error.message);
        return 1;
      }
      throw error;
    }
  }
  let results: ReturnType<typeof runSimulation>;
  try {
    results = runSimulation({
      scenario,
      contention: { clients, opMs: 5 },
      ...(configPolicy ? { configPolicy } : {}),
      ...(configBudget ? { configBudget } : {}),
    });
  } catch (error) {
    // The scenario's own bounds (e.g. at most 50,000,000 requests): a usage error.
    if (isReprocessError(error, 'INVALID_ARGUMENT')) {
      io.err(`reprocess simulate: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  const unwritten = await writeReport(out, renderReport(simulationReport(results)));
  if (unwritten !== undefined) {
    io.err(`reprocess simulate: ${unwritten}`);
    return 1;
  }
  if (values.json) {
    const slim = {
      scenario: results.scenario,
      dependency: results.dependency.map(
        ({ load: _l, failures: _f, delaySample: _d, ...rest }) => rest,
      ),
      contention: results.contention,
      report: out,
    };
    io.out(JSON.stringify(slim, null, 2));
  } else {
    io.out(simulationTables(results));
    io.out(`\nreport: ${out}`);
  }
  return 0;
}
