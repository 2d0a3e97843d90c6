/**
 * What the store benches (`stores-sql.ts`, `stores-kv.ts`) share: the settings they read from the
 * environment, the fresh and replay variants through a store or through `idempotent()`, the
 * measurement (lanes on a timer, interleaved rounds, the median round) and the Markdown table.
 *
 *   fresh  = begin + complete of a new key (an operation that runs)
 *   replay = begin of a completed key (a repeat that returns the stored result)
 *
 * Each bench chooses what it measures beyond throughput and latency (CPU per operation, with a
 * reader of the server's CPU) and which columns its table shows, so its table stays the one
 * that older runs printed.
 */
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { idempotent } from '../../src/idempotency/index.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
export const ONLY = process.env.BENCH_ONLY;
export const LEASE_MS = 30_000;
export const TTL_MS = 86_400_000;
export const FINGERPRINT = 'f'.repeat(64);
export const RESULT = '{"invoice":"inv_123","amount":4200,"currency":"EUR"}';
/** Names the keys, tables and schemas of this run, so that they can be removed at the end. */
export const RUN = `bench${process.pid.toString(36)}${Date.now().toString(36)}`;
const CONCURRENCY = [1, 64];

/**
 * A full garbage collection, run before each measurement so that the garbage of the variant
 * measured before it is not collected (and billed) during it: Powertools allocates several
 * times what the others do. (Rerunning the Redis rows with this and the random order did not
 * change their spread at concurrency 1, which stays wide on this machine; it removes a bias,
 * it does not explain the spread.)
 */
const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return typeof gc === 'function' ? gc : () => {};
})();

/** The variants in a new random order (each round measures them in its own). */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** One way of doing fresh and replayed operations, measured side by side. */
export interface Variant {
  name: string;
  /** The floor row this variant is compared with (undefined: it is a floor). */
  floor?: string;
  /** A Powertools row this variant is compared with. */
  powertools?: string;
  fresh(key: string): Promise<void>;
  replay(key: string): Promise<void>;
}

/** The rows a variant is compared with. */
export interface Compare {
  floor: string;
  powertools?: string;
}

/** Reads a server's total CPU time in seconds (undefined where it cannot be read). */
export type ServerCpu = () => Promise<number | undefined>;

interface Sample {
  opsPerSecond: number;
  p50: number;
  p99: number;
  /** Lowest and highest ops/s over the rounds (on the median only). */
  range?: [number, number];
  /** CPU time per operation in µs, where the bench measures it (see `benchServer`). */
  cpu?: {
    /** This process: the client side. */
    client: number;
    /** The server, where it can be read. */
    server: number | undefined;
  };
}

export interface Row {
  server: string;
  variant: Variant;
  concurrency: number;
  fresh: Sample;
  replay: Sample;
}

function hexKey(prefix: string, n: number): string {
  return createHash('sha256').update(`${prefix}:${n}`).digest('hex');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

/**
 * Runs `op` on `concurrency` lanes for SECONDS; each lane takes its next key from `nextKey`.
 * With `serverCpu`, also the CPU time per operation of this process and of the server, read
 * outside the timed span.
 */
async function measure(
  concurrency: number,
  nextKey: () => string,
  op: (key: string) => Promise<void>,
  serverCpu: ServerCpu | undefined,
): Promise<Sample> {
  const latencies: number[] = [];
  collectGarbage();
  const serverBefore = serverCpu ? await serverCpu() : undefined;
  const clientBefore = serverCpu ? process.cpuUsage() : undefined;
  const started = performance.now();
  const stopAt = started + SECONDS * 1000;
  async function lane(): Promise<void> {
    while (performance.now() < stopAt) {
      const key = nextKey();
      const t = performance.now();
      await op(key);
      latencies.push(performance.now() - t);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  const elapsed = (performance.now() - started) / 1000;
  const client = clientBefore ? process.cpuUsage(clientBefore) : undefined;
  const serverAfter = serverCpu ? await serverCpu() : undefined;
  const ops = latencies.length;
  latencies.sort((a, b) => a - b);
  const sample: Sample = {
    opsPerSecond: ops / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
  if (client !== undefined) {
    sample.cpu = {
      client: (client.user + client.system) / ops,
      server:
        serverBefore === undefined || serverAfter === undefined
          ? undefined
          : ((serverAfter - serverBefore) * 1e6) / ops,
    };
  }
  return sample;
}

/** The median round by ops/s, with the lowest and highest ops/s of all rounds. */
function median(samples: Sample[]): Sample {
  const sorted = [...samples].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
  const middle = sorted[Math.floor(sorted.length / 2)] as Sample;
  const low = sorted[0]?.opsPerSecond ?? middle.opsPerSecond;
  const high = sorted[sorted.length - 1]?.opsPerSecond ?? middle.opsPerSecond;
  return { ...middle, range: [low, high] };
}

/**
 * Measures every variant of one server at concurrency 1 and 64, interleaved over ROUNDS rounds
 * (each round in a random order, after a full garbage collection before every measurement), and
 * keeps the median round of each. With `serverCpu`, rows also carry CPU per operation.
 */
export async function benchServer(
  server: string,
  variants: Variant[],
  serverCpu?: ServerCpu,
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const concurrency of CONCURRENCY) {
    const fresh = new Map<string, Sample[]>();
    const replay = new Map<string, Sample[]>();
    const done = new Map<string, string[]>(variants.map((v) => [v.name, []]));
    let counter = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const variant of shuffled(variants)) {
        const keys = done.get(variant.name) as string[];
        const prefix = `${RUN}:${server}:${variant.name}:${concurrency}`;
        const f = await measure(
          concurrency,
          () => hexKey(prefix, counter++),
          async (key) => {
            await variant.fresh(key);
            keys.push(key);
          },
          serverCpu,
        );
        let next = 0;
        const r = await measure(
          concurrency,
          () => keys[next++ % keys.length] as string,
          (key) => variant.replay(key),
          serverCpu,
        );
        fresh.set(variant.name, [...(fresh.get(variant.name) ?? []), f]);
        replay.set(variant.name, [...(replay.get(variant.name) ?? []), r]);
        process.stderr.write('.');
      }
    }
    for (const variant of variants) {
      rows.push({
        server,
        variant,
        concurrency,
        fresh: median(fresh.get(variant.name) ?? []),
        replay: median(replay.get(variant.name) ?? []),
      });
    }
  }
  process.stderr.write('\n');
  return rows;
}

/** Fresh and replay through a store's own methods. */
export function storeVariant(name: string, compare: Compare, store: IdempotencyStore): Variant {
  return {
    name,
    ...compare,
    async fresh(key) {
      const begun = await store.begin(key, FINGERPRINT, LEASE_MS, TTL_MS);
      if (begun.kind !== 'acquired') throw new Error(`${name}: fresh key not acquired`);
      const done = await store.complete(key, begun.token, RESULT, TTL_MS);
      if (done.kind !== 'ok') throw new Error(`${name}: complete lost its lease`);
    },
    async replay(key) {
      const begun = await store.begin(key, FINGERPRINT, LEASE_MS, TTL_MS);
      if (begun.kind !== 'existing' || begun.record.result !== RESULT) {
        throw new Error(`${name}: replay did not return the stored result`);
      }
    },
  };
}

/** Fresh and replay through idempotent() on a store (the core hashes the key again). */
export function coreVariant(name: string, compare: Compare, store: IdempotencyStore): Variant {
  const invoice = idempotent(
    async (input: { id: string; amount: number }) => ({
      invoice: `inv_${input.id.slice(0, 8)}`,
      amount: input.amount,
    }),
    { store, key: 'id', scope: 'bench', heartbeat: false },
  );
  return {
    name,
    ...compare,
    async fresh(key) {
      const outcome = await invoice.run({ id: key, amount: 4200 });
      if (outcome.replayed) throw new Error(`${name}: fresh did not run`);
    },
    async replay(key) {
      const outcome = await invoice.run({ id: key, amount: 4200 });
      if (!outcome.replayed) throw new Error(`${name}: replay ran again`);
    },
  };
}

/** Whether a TCP connection to the URL's host and port (or `defaultPort`) opens within 1 s. */
export async function reachable(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || defaultPort) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * A column of the table, shown once for fresh and once for replay:
 *   ops:        ops/s of the median round
 *   range:      lowest-highest ops/s over the rounds
 *   p50, p99:   latency in ms
 *   cpu:        CPU µs per operation, client+server ('?' where the server's cannot be read)
 *   vsFloor:    ops/s as a percentage of the variant's floor
 *   vsPowertools: ops/s as a multiple of the variant's Powertools row
 */
export type Column = 'ops' | 'range' | 'p50' | 'p99' | 'cpu' | 'vsFloor' | 'vsPowertools';

type Phase = 'fresh' | 'replay';

const headers: Record<Column, (phase: Phase) => string> = {
  ops: (phase) => `${phase} ops/s`,
  range: () => '(min-max)',
  p50: () => 'p50 ms',
  p99: () => 'p99 ms',
  cpu: () => 'cpu µs c+s',
  vsFloor: () => 'vs floor',
  vsPowertools: () => 'vs PT',
};

/** Prints the rows as a Markdown table: variant, concurrency, then `columns` for each phase. */
export function printTable(rows: Row[], columns: Column[]): void {
  const byName = new Map<string, Row>();
  for (const row of rows) byName.set(`${row.variant.name}@${row.concurrency}`, row);
  const phases: Phase[] = ['fresh', 'replay'];
  const header = [
    'variant',
    'c',
    ...phases.flatMap((phase) => columns.map((column) => headers[column](phase))),
  ];
  const count = (n: number) => Math.round(n).toLocaleString('en-US');
  const lines = rows.map((row) => {
    const compared = (name: string | undefined) =>
      name === undefined ? undefined : byName.get(`${name}@${row.concurrency}`);
    const floor = compared(row.variant.floor);
    const powertools = compared(row.variant.powertools);
    const cell = (phase: Phase, column: Column): string => {
      const sample = row[phase];
      switch (column) {
        case 'ops':
          return count(sample.opsPerSecond);
        case 'range':
          return sample.range === undefined
            ? ''
            : `${count(sample.range[0])}-${count(sample.range[1])}`;
        case 'p50':
          return sample.p50.toFixed(2);
        case 'p99':
          return sample.p99.toFixed(2);
        case 'cpu': {
          if (sample.cpu === undefined) return '';
          const server = sample.cpu.server;
          return `${Math.round(sample.cpu.client)}+${server === undefined ? '?' : Math.round(server)}`;
        }
        case 'vsFloor':
          return floor === undefined
            ? ''
            : `${Math.round((sample.opsPerSecond / floor[phase].opsPerSecond) * 100)}%`;
        case 'vsPowertools':
          return powertools === undefined
            ? ''
            : `${(sample.opsPerSecond / powertools[phase].opsPerSecond).toFixed(1)}x`;
      }
    };
    return [
      row.variant.name,
      String(row.concurrency),
      ...phases.flatMap((phase) => columns.map((column) => cell(phase, column))),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const format = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  console.log(format(header));
  console.log(
    `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
  );
  for (const line of lines) console.log(format(line));
}
