/**
 * Success-path overhead of retry wrappers: ns per call for a bare async call, our retry()
 * (no options, constant options, a shared policy, the sync profile with its attempt timeout
 * and deadline), cockatiel's retry policy and p-retry, measured in one run.
 *
 * A hand loop rather than a per-call timer: each round times a batch of sequential awaited
 * calls with process.hrtime.bigint(), so the timer's own cost is spread over the batch.
 * Every case is warmed up first, then rounds are interleaved (each round runs every case
 * once, in a shuffled order) so that drift of the machine (other processes, GC, frequency)
 * hits every case alike. The table shows the median and the fastest round (on a busy
 * machine the minimum is the better estimate of the code's own cost).
 * `npm run bench:retry` (ROUNDS and BATCH env vars change the size).
 */
import { handleAll, retry as cockatielRetry } from 'cockatiel';
import pRetry from 'p-retry';
import { createRetryPolicy, profiles, retry } from '../src/retry/index.js';

const ROUNDS = Number(process.env.ROUNDS ?? 31);
const BATCH = Number(process.env.BATCH ?? 20_000);
const WARMUP_BATCHES = 5;

let sink = 0;
const work = async (): Promise<number> => 42;

const constantOptions = { maxAttempts: 3 };
const policy = createRetryPolicy({ maxAttempts: 3 });
const cockatiel = cockatielRetry(handleAll, { maxAttempts: 3 });

interface Case {
  name: string;
  call: () => Promise<number>;
}

const cases: Case[] = [
  { name: 'bare async call', call: () => work() },
  { name: 'reprocess retry(fn)', call: () => retry(work) },
  { name: 'reprocess retry(fn, { maxAttempts: 3 })', call: () => retry(work, constantOptions) },
  { name: 'reprocess policy.execute(fn)', call: () => policy.execute(work) },
  { name: 'reprocess retry(fn, profiles.sync)', call: () => retry(work, profiles.sync) },
  { name: 'cockatiel retry(handleAll).execute(fn)', call: () => cockatiel.execute(work) },
  { name: 'p-retry pRetry(fn, { retries: 2 })', call: () => pRetry(work, { retries: 2 }) },
];

async function batch(call: () => Promise<number>, size: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < size; i++) sink += await call();
  return Number(process.hrtime.bigint() - start) / size;
}

async function main(): Promise<void> {
  for (const c of cases) {
    for (let i = 0; i < WARMUP_BATCHES; i++) await batch(c.call, BATCH);
  }
  const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const order = [...cases];
  for (let round = 0; round < ROUNDS; round++) {
    // A fresh order each round, so no case always runs after a GC-heavy neighbour.
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j] as Case, order[i] as Case];
    }
    for (const c of order) samples.get(c.name)?.push(await batch(c.call, BATCH));
  }

  const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  };
  const stat = (name: string) => {
    const values = samples.get(name) ?? [];
    return { median: median(values), min: Math.min(...values) };
  };
  const bare = stat('bare async call');
  const rows = cases.map((c) => {
    const values = samples.get(c.name) ?? [];
    const { median: med, min } = stat(c.name);
    const sorted = [...values].sort((a, b) => a - b);
    const isBare = c.name === 'bare async call';
    return {
      case: c.name,
      'ns/call median': med.toFixed(0),
      'ns/call min': min.toFixed(0),
      'p10..p90': `${(sorted[Math.floor(sorted.length * 0.1)] ?? 0).toFixed(0)}..${(sorted[Math.floor(sorted.length * 0.9)] ?? 0).toFixed(0)}`,
      'overhead median': isBare ? '-' : (med - bare.median).toFixed(0),
      'overhead min': isBare ? '-' : (min - bare.min).toFixed(0),
    };
  });
  console.log(
    `success path, ${ROUNDS} rounds x ${BATCH} sequential awaited calls, node ${process.version}`,
  );
  console.table(rows);
  const ours = stat('reprocess policy.execute(fn)');
  const theirs = stat('cockatiel retry(handleAll).execute(fn)');
  const verdict = (a: number, b: number) => (a <= b ? 'goal met' : 'goal NOT met');
  console.log(
    `overhead of policy.execute vs cockatiel: median ${(ours.median - bare.median).toFixed(0)} vs ${(theirs.median - bare.median).toFixed(0)} ns (${verdict(ours.median, theirs.median)}), min ${(ours.min - bare.min).toFixed(0)} vs ${(theirs.min - bare.min).toFixed(0)} ns (${verdict(ours.min, theirs.min)})`,
  );
  if (sink === 0) console.log('unreachable');
}

await main();
