/**
 * Success-path overhead of retry wrappers: ns per call for a bare async call, our retry()
 * (no options, constant options, a shared policy, the sync profile with its attempt timeout
 * and deadline), cockatiel's retry policy and p-retry, measured in one run.
 *
 * A hand loop rather than a per-call timer: each round times a batch of sequential awaited
 * calls with process.hrtime.bigint(), so the timer's own cost is spread over the batch.
 * Every case is warmed up first, then rounds are interleaved (each round runs every case
 * once, in a shuffled order) so that drift of the machine (other processes, GC, frequency) hits every case alike; the table
 * shows the median round. `npm run bench:retry` (ROUNDS and BATCH env vars to change size).
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
  const bare = median(samples.get('bare async call') ?? []);
  const rows = cases.map((c) => {
    const values = samples.get(c.name) ?? [];
    const med = median(values);
    const sorted = [...values].sort((a, b) => a - b);
    return {
      case: c.name,
      'ns/call (median)': med.toFixed(0),
      'p10..p90': `${(sorted[Math.floor(sorted.length * 0.1)] ?? 0).toFixed(0)}..${(sorted[Math.floor(sorted.length * 0.9)] ?? 0).toFixed(0)}`,
      'overhead ns': c.name === 'bare async call' ? '-' : (med - bare).toFixed(0),
    };
  });
  console.log(
    `success path, ${ROUNDS} rounds x ${BATCH} sequential awaited calls, node ${process.version}`,
  );
  console.table(rows);
  const ours = median(samples.get('reprocess policy.execute(fn)') ?? []) - bare;
  const theirs = median(samples.get('cockatiel retry(handleAll).execute(fn)') ?? []) - bare;
  console.log(
    `overhead of policy.execute vs cockatiel: ${ours.toFixed(0)} ns vs ${theirs.toFixed(0)} ns (${ours <= theirs ? 'goal met' : 'goal NOT met'})`,
  );
  if (sink === 0) console.log('unreachable');
}

await main();
