/**
 * The chaos run (`npm run chaos`, docs/readme/chaos.md) in a small, fast configuration:
 * worker processes on RabbitMQ then JetStream, the HTTP API, SIGKILLs, broker and store
 * connection kills, a store outage and a stalled zombie per phase. It asserts the invariants
 * the run checks against PostgreSQL, not figures: with idempotency no effect exists twice and
 * nothing is lost; without it (the baseline) the same faults leave duplicates.
 *
 * The runs go in this process (the workers are still their own processes) and at once:
 * starting the runner with tsx three more times costs seconds of CPU on a busy machine, and
 * most of a run is waiting (retry delays, the outage, the stall). The command itself is
 * checked for its exit codes on bad flags.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { parseChaosArgs } from '../../chaos/options.js';
import type { ChaosReport } from '../../chaos/report.js';
import { runChaos } from '../../chaos/run-chaos.js';
import { describeWithService, serviceUp } from '../helpers/services.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Small: a few hundred messages, 2 workers, 2 kills, a 2.5 s outage, one zombie per phase. */
const SMALL = [
  '--messages=80',
  '--http=40',
  '--workers=2',
  '--kills=2',
  '--stalls=1',
  '--lease=1s',
  '--stall=1500ms',
  '--outage=2500ms',
  '--broker-cuts=1',
  '--store-kills=1',
  // rabbitmqctl takes seconds per call here; the full run uses it, this one the relay.
  '--amqp-close=relay',
  '--duration=240s',
];

interface Run {
  report: ChaosReport;
  /** The run's progress lines, shown when an assertion fails. */
  log: string;
}

async function chaos(args: readonly string[]): Promise<Run> {
  const parsed = parseChaosArgs(args);
  if (parsed.kind !== 'run') throw new Error('not a run');
  const lines: string[] = [];
  const report = await runChaos(parsed.options, (line) => lines.push(line));
  return { report, log: lines.join('\n') };
}

function cli(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'chaos/run.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (t: string) => {
      stderr += t;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

function failing(report: ChaosReport): string {
  return report.checks
    .filter((c) => !c.ok)
    .map((c) => `${c.name}: ${c.detail}`)
    .join('\n');
}

function expectProtected(run: Run, phases: number): ChaosReport {
  const r = run.report;
  expect(failing(r), run.log).toBe('');
  expect(r.ok).toBe(true);
  expect(r.totals.duplicateEffects).toBe(0);
  expect(r.totals.lostMessages).toBe(0);
  expect(r.phases).toHaveLength(phases);
  for (const phase of r.phases) {
    expect(phase.verdict.duplicateEffects).toBe(0);
    expect(phase.verdict.done + phase.verdict.quarantined).toBe(phase.messages);
    expect(phase.timedOut).toBe(false);
  }
  expect(r.http.verdict.executedOnce).toBe(40);
  expect(r.unguarded).toEqual({ withoutLease: 0, duringOutage: 0 });
  // The faults did happen: the kills and the outages, and each zombie met the fence.
  expect(r.totals.workersKilled).toBeGreaterThanOrEqual(2);
  expect(r.totals.faults.storeOutages).toBe(phases);
  expect(r.totals.faults.duplicatePublications).toBeGreaterThan(0);
  expect(r.totals.faults.leaseExpiries).toBeGreaterThanOrEqual(1);
  expect(r.totals.fencedWrites).toBeGreaterThanOrEqual(1);
  return r;
}

// The run needs all four servers: the block is skipped (or fails under REQUIRE_SERVICES=1)
// naming the first one that is not reachable.
const SERVICES = ['postgres', 'redis', 'rabbitmq', 'nats'] as const;
const up = await Promise.all(SERVICES.map((name) => serviceUp(name)));
const firstMissing = SERVICES.find((_, i) => !up[i]) ?? 'postgres';

await describeWithService(firstMissing, 'npm run chaos (PostgreSQL, Redis, RabbitMQ, NATS)', () => {
  it.concurrent('Redis store, RabbitMQ then JetStream and HTTP: every effect once, nothing lost', async () => {
    expectProtected(await chaos([...SMALL, '--store=redis', '--seed=101']), 2);
  }, 300_000);

  it.concurrent('PostgreSQL store, RabbitMQ then JetStream and HTTP: every effect once, nothing lost', async () => {
    expectProtected(await chaos([...SMALL, '--store=postgres', '--seed=202']), 2);
  }, 300_000);

  it.concurrent('without idempotency the same faults leave duplicate effects (and still lose nothing)', async () => {
    const run = await chaos([
      ...SMALL,
      '--no-idempotency',
      '--phases=amqp',
      '--kills=1',
      '--seed=303',
    ]);
    const { report } = run;
    expect(report.ok, run.log).toBe(true);
    expect(report.idempotency).toBe(false);
    expect(report.totals.duplicateEffects).toBeGreaterThan(0);
    expect(report.totals.lostMessages).toBe(0);
    const duplicates = report.checks.find((c) => c.name === 'no effect exists twice');
    expect(duplicates?.ok).toBe(false);
  }, 300_000);
});

it('the command exits 2 on bad flags, naming them', async () => {
  const run = await cli(['--store', 'mongo']);
  expect(run.code).toBe(2);
  expect(run.stderr).toContain('--store must be redis or postgres');
}, 60_000);
