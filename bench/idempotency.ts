/**
 * Throughput and latency of `idempotent()` on the memory and SQLite stores, beside a raw
 * floor measured in the same run: bare better-sqlite3 on the same kind of file (WAL,
 * synchronous=NORMAL) doing the same number of write transactions per operation.
 *
 *   fresh  = a new operation: begin + complete, 2 write transactions (floor: INSERT, then UPDATE)
 *   replay = a duplicate of a completed operation: 1 read (floor: SELECT by key)
 *
 * The SQLite store runs WAL checkpoints on a thread of its own once it has made 1,000 writes
 * (its default, `checkpoint: 'background'`), while the floor, bare better-sqlite3, checkpoints
 * inline in the commit that crosses 1,000 WAL pages. "sqlite, checkpoint: 'inline', fresh"
 * is the store checkpointing as the floor does: the like-for-like comparison.
 *
 * The SQLite store keeps finished records in memory for replays (its replay cache, checked
 * against PRAGMA data_version on every hit): the replay rows mostly hit it. "sqlite replay,
 * no replay cache" is the same replay with `replayCache: false`, reading the table each time.
 *
 * Rows marked "@64" keep 64 operations in flight (64 loops of awaited operations, as a
 * consumer with concurrency 64 or a busy HTTP server would): the SQLite store then commits
 * the writes of one tick together (group commit, its default). They are compared with the
 * same per-operation floor. "floor: 64 per write transaction" is an extra row, not a floor:
 * bare better-sqlite3 with the inserts of 64 keys in one transaction, then their updates in
 * another, the most group commit can give on this file.
 *
 * Each case runs in batches of awaited operations; rounds are interleaved in a
 * shuffled order so that drift of the (shared) machine hits every case alike. Rounds
 * alternate between two kinds: in one every call is timed with process.hrtime.bigint() (p50
 * and p99 are over those calls), in the other nothing is timed inside the batch, so that
 * ops/s and CPU time do not include the clock reads (about 0.2 µs a call, which would weigh
 * most on the 1-read floor). ops/s and cpu µs/op are medians of the untimed rounds (CPU time
 * is this process's user + system time, the column to compare on a loaded machine). "vs
 * floor" divides the floor's median by the case's.
 *
 * `npm run bench:idempotency` (ROUNDS, BATCH env vars change the size).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { idempotent, sha256Hex } from '../src/idempotency/index.js';
import type { IdempotencyStore } from '../src/idempotency/store.js';
import { createMemoryStore } from '../src/stores/memory-store.js';
import { createSqliteStore } from '../src/stores/sqlite/index.js';

const ROUNDS = Number(process.env.ROUNDS ?? 15);
const BATCH = Number(process.env.BATCH ?? 1000);
const WARMUP = BATCH * 2;

interface Request {
  requestId: string;
  amount: number;
}

interface Case {
  name: string;
  /** The floor case it is compared with. */
  floor?: string;
  /** Runs one operation; `i` is unique per call of this case. */
  op: (i: number) => Promise<unknown>;
  /** Operations in flight at once (default 1: each awaited before the next). */
  inFlight?: number;
  /** Called before timing, with the indexes `op` will be called with, to seed replays. */
  prepare?: (from: number, count: number) => Promise<void>;
}

const dir = mkdtempSync(join(tmpdir(), 'reprocess-bench-idem-'));
let sink = 0;

/**
 * Keys like the stored ones (SHA-256 hex: spread over the whole b-tree, not appended in
 * order), computed before a batch is timed so that hashing is not counted.
 */
function hexKeys(label: string): {
  key: (i: number) => string;
  fill: (from: number, count: number) => void;
} {
  const keys = new Map<number, string>();
  return {
    key: (i) => keys.get(i) ?? sha256Hex(`${label}/${i}`),
    fill: (from, count) => {
      keys.clear();
      for (let i = from; i < from + count; i++) keys.set(i, sha256Hex(`${label}/${i}`));
    },
  };
}

const REPLAY_KEYS = Array.from({ length: 5000 }, (_, i) => sha256Hex(`replay/${i}`));

function wrap(store: IdempotencyStore) {
  return idempotent(
    async (req: Request) => {
      sink += req.amount;
      return { charged: req.amount, currency: 'EUR', receipt: `rcpt-${req.requestId}` };
    },
    { store, key: 'requestId', scope: 'charge' },
  );
}

function storeCases(
  label: string,
  store: IdempotencyStore,
  floor?: { fresh: string; replay: string },
  inFlight = 1,
): Case[] {
  const charge = wrap(store);
  const replayed = new Set<number>();
  const fresh: Case = {
    name: `${label} fresh (begin + complete)`,
    op: (i) => charge({ requestId: `${label}-fresh-${i}`, amount: 1 }),
  };
  const replay: Case = {
    name: `${label} replay (duplicate)`,
    op: (i) => charge({ requestId: `${label}-replay-${i % 5000}`, amount: 1 }),
    prepare: async (from, count) => {
      for (let i = from; i < from + count; i++) {
        const n = i % 5000;
        if (replayed.has(n)) continue;
        replayed.add(n);
        await charge({ requestId: `${label}-replay-${n}`, amount: 1 });
      }
    },
  };
  if (floor) {
    fresh.floor = floor.fresh;
    replay.floor = floor.replay;
  }
  if (inFlight > 1) {
    fresh.inFlight = inFlight;
    replay.inFlight = inFlight;
  }
  return [fresh, replay];
}

/**
 * The store alone, without the core: begin + complete for a fresh operation, begin for a
 * replay. The gap between these and the floor is the store's own cost.
 */
function directCases(
  store: IdempotencyStore,
  floor: { fresh: string; replay: string },
  inFlight = 1,
): Case[] {
  const fp = 'a'.repeat(64);
  const result = '{"charged":1,"currency":"EUR","receipt":"rcpt-0000000000"}';
  const fresh = hexKeys(`direct-${inFlight}`);
  const seeded = new Set<number>();
  const at = inFlight > 1 ? ` @${inFlight}` : '';
  const cases: Case[] = [
    {
      name: `sqlite store alone${at}: begin + complete`,
      floor: floor.fresh,
      op: async (i) => {
        const key = fresh.key(i);
        const begun = await store.begin(key, fp, 30_000, 86_400_000);
        if (begun.kind !== 'acquired') throw new Error('expected to acquire');
        await store.complete(key, begun.token, result, 86_400_000);
      },
      prepare: async (from, count) => fresh.fill(from, count),
    },
    {
      name: `sqlite store alone${at}: begin (replay)`,
      floor: floor.replay,
      op: async (i) => {
        const begun = await store.begin(REPLAY_KEYS[i % 5000] as string, fp, 30_000, 86_400_000);
        if (begun.kind !== 'existing') throw new Error('expected a replay');
      },
      prepare: async (from, count) => {
        for (let i = from; i < from + count; i++) {
          const n = i % 5000;
          if (seeded.has(n)) continue;
          seeded.add(n);
          const key = REPLAY_KEYS[n] as string;
          const begun = await store.begin(key, fp, 30_000, 86_400_000);
          if (begun.kind === 'acquired') await store.complete(key, begun.token, result, 86_400_000);
        }
      },
    },
  ];
  if (inFlight > 1) for (const c of cases) c.inFlight = inFlight;
  return cases;
}

/** Bare better-sqlite3: the same pragmas as the store, a key and a result-sized value. */
function floorCases(): Case[] {
  const db = new Database(join(dir, 'floor.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE t (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO t (key, value) VALUES (?, ?)');
  const update = db.prepare('UPDATE t SET value = ? WHERE key = ?');
  const select = db.prepare('SELECT value FROM t WHERE key = ?');
  const fresh = hexKeys('floor');
  const value = '{"charged":1,"currency":"EUR","receipt":"rcpt-0000000000"}';
  for (const key of REPLAY_KEYS) insert.run(key, value);
  return [
    {
      name: 'floor: 2 write transactions',
      op: async (i) => {
        const key = fresh.key(i);
        insert.run(key, '');
        update.run(value, key);
      },
      prepare: async (from, count) => fresh.fill(from, count),
    },
    {
      name: 'floor: 1 read',
      op: async (i) => {
        sink += (select.get(REPLAY_KEYS[i % 5000]) as { value: string }).value.length;
      },
    },
  ];
}

/**
 * Not a floor: the same inserts and updates as the write floor, 64 keys per transaction
 * (the inserts of 64 keys in one, then their updates in another), on a file of its own.
 */
function batchedFloorCase(): Case {
  const db = new Database(join(dir, 'floor-batched.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE t (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO t (key, value) VALUES (?, ?)');
  const update = db.prepare('UPDATE t SET value = ? WHERE key = ?');
  const value = '{"charged":1,"currency":"EUR","receipt":"rcpt-0000000000"}';
  const insertAll = db.transaction((keys: string[]) => {
    for (const key of keys) insert.run(key, '');
  });
  const updateAll = db.transaction((keys: string[]) => {
    for (const key of keys) update.run(value, key);
  });
  const fresh = hexKeys('floor-batched');
  let group: string[] = [];
  return {
    name: 'floor: 64 per write transaction',
    floor: 'floor: 2 write transactions',
    op: async (i) => {
      group.push(fresh.key(i));
      if (group.length === 64) {
        insertAll(group);
        updateAll(group);
        group = [];
      }
    },
    prepare: async (from, count) => fresh.fill(from, count),
  };
}

/**
 * Runs one batch; returns wall ns/op and CPU ns/op (this process, user + system). With
 * `samples`, every call is timed into it as well.
 */
async function timed(
  c: Case,
  from: number,
  count: number,
  samples?: number[],
): Promise<{ wall: number; cpu: number }> {
  if (c.prepare) await c.prepare(from, count);
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  if (c.inFlight) {
    let next = from;
    const end = from + count;
    const loop = async () => {
      while (next < end) {
        const i = next++;
        if (samples) {
          const t0 = process.hrtime.bigint();
          await c.op(i);
          samples.push(Number(process.hrtime.bigint() - t0));
        } else {
          await c.op(i);
        }
      }
    };
    await Promise.all(Array.from({ length: c.inFlight }, loop));
  } else if (samples) {
    for (let i = from; i < from + count; i++) {
      const t0 = process.hrtime.bigint();
      await c.op(i);
      samples.push(Number(process.hrtime.bigint() - t0));
    }
  } else {
    for (let i = from; i < from + count; i++) await c.op(i);
  }
  const wall = Number(process.hrtime.bigint() - start) / count;
  const cpu = process.cpuUsage(cpu0);
  return { wall, cpu: ((cpu.user + cpu.system) * 1000) / count };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

async function main(): Promise<void> {
  const sqlite = createSqliteStore({ path: join(dir, 'store.sqlite') });
  const sqlite64 = createSqliteStore({ path: join(dir, 'store-64.sqlite') });
  const direct = createSqliteStore({ path: join(dir, 'direct.sqlite') });
  const direct64 = createSqliteStore({ path: join(dir, 'direct-64.sqlite') });
  const uncached = createSqliteStore({ path: join(dir, 'uncached.sqlite'), replayCache: false });
  const inline = createSqliteStore({ path: join(dir, 'inline.sqlite'), checkpoint: 'inline' });
  const floors = { fresh: 'floor: 2 write transactions', replay: 'floor: 1 read' };
  const cases: Case[] = [
    ...floorCases(),
    batchedFloorCase(),
    ...directCases(direct, floors),
    ...directCases(direct64, floors, 64),
    ...storeCases('sqlite', sqlite, floors),
    // Only its replay row: its fresh operations are those of the row above.
    ...storeCases('sqlite, no replay cache,', uncached, floors).filter((c) =>
      c.name.endsWith('replay (duplicate)'),
    ),
    // Only its fresh row: replays write nothing, so where checkpoints run does not matter.
    ...storeCases("sqlite, checkpoint: 'inline',", inline, floors).filter((c) =>
      c.name.endsWith('fresh (begin + complete)'),
    ),
    ...storeCases('sqlite @64', sqlite64, floors, 64),
    ...storeCases('memory', createMemoryStore()),
  ];

  let next = 0;
  for (const c of cases) {
    await timed(c, next, WARMUP);
    next += WARMUP;
  }
  const loadBefore = loadavg()[0] ?? 0;
  const perOp = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const cpuPerOp = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const calls = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const order = [...cases];
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j] as Case, order[i] as Case];
    }
    const sampled = round % 2 === 0;
    for (const c of order) {
      const { wall, cpu } = await timed(c, next, BATCH, sampled ? calls.get(c.name) : undefined);
      if (!sampled || ROUNDS === 1) {
        perOp.get(c.name)?.push(wall);
        cpuPerOp.get(c.name)?.push(cpu);
      }
      next += BATCH;
    }
  }

  const rows = cases.map((c) => {
    const ns = median(perOp.get(c.name) ?? []);
    const sorted = [...(calls.get(c.name) ?? [])].sort((a, b) => a - b);
    const floorNs = c.floor ? median(perOp.get(c.floor) ?? []) : undefined;
    const cpuNs = median(cpuPerOp.get(c.name) ?? []);
    const floorCpuNs = c.floor ? median(cpuPerOp.get(c.floor) ?? []) : undefined;
    return {
      case: c.name,
      'ops/s': Math.round(1e9 / ns).toLocaleString('en-US'),
      'p50 µs': (percentile(sorted, 50) / 1000).toFixed(1),
      'p99 µs': (percentile(sorted, 99) / 1000).toFixed(1),
      'vs floor': floorNs === undefined ? '' : `${Math.round((floorNs / ns) * 100)}%`,
      'cpu µs/op': (cpuNs / 1000).toFixed(1),
      'cpu vs floor': floorCpuNs === undefined ? '' : `${Math.round((floorCpuNs / cpuNs) * 100)}%`,
    };
  });
  const head = Object.keys(rows[0] ?? {});
  const widths = head.map((h) =>
    Math.max(h.length, ...rows.map((r) => String(r[h as keyof typeof r]).length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const load = `load average ${loadBefore.toFixed(1)} -> ${(loadavg()[0] ?? 0).toFixed(1)} on ${availableParallelism()} cores`;
  console.log(
    `idempotent() throughput, ${ROUNDS} rounds x ${BATCH} ops per case, sequential unless @64 (node ${process.version}, ${load})`,
  );
  console.log(line(head));
  console.log(
    `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
  );
  for (const row of rows) console.log(line(head.map((h) => String(row[h as keyof typeof row]))));
  if (sink < 0) console.log(sink);

  for (const store of [sqlite, sqlite64, direct, direct64, uncached, inline]) await store.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
