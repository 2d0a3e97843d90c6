/**
 * `npm run bench:stores` (first half): the PostgreSQL and MySQL/MariaDB stores against the
 * raw-driver floor on the same server, at concurrency 1 and 64.
 *
 *   fresh  = begin + complete of a new key (an operation that runs)
 *   replay = begin of a completed key (a repeat that returns the stored result)
 *
 * The floor does the minimum round trips by hand on a table of the same schema:
 *   PostgreSQL fresh: INSERT ... ON CONFLICT ... RETURNING token, then UPDATE ... WHERE token
 *   MySQL fresh:      INSERT ... ON DUPLICATE KEY UPDATE (token via LAST_INSERT_ID), then UPDATE
 *   replay (both):    one SELECT of the row
 * `idempotent()` rows go through the whole core (hashing, codec, state machine) on the store.
 * Store rows use the defaults, batching on (at concurrency 1 every call goes alone);
 * `, unbatched` rows set `batch: false`, one statement per call.
 *
 * Variants run interleaved, BENCH_ROUNDS times (default 3), BENCH_SECONDS each (default 2);
 * the table shows the median round, so a noisy neighbour on the machine hits every variant
 * alike. Tables are created in a schema/table of this run and dropped at the end.
 *
 *   npx tsx bench/stores-sql.ts            # both servers
 *   BENCH_ONLY=postgres npx tsx bench/stores-sql.ts
 */
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { cpus, loadavg } from 'node:os';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { idempotent } from '../src/idempotency/index.js';
import type { IdempotencyStore } from '../src/idempotency/store.js';
import { createMysqlStore } from '../src/stores/mysql/index.js';
import { createPostgresStore } from '../src/stores/postgres/index.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ONLY = process.env.BENCH_ONLY;
const CONCURRENCY = [1, 64];
const POOL_SIZE = 16;
const LEASE_MS = 30_000;
const TTL_MS = 86_400_000;
const FINGERPRINT = 'f'.repeat(64);
const RESULT = '{"invoice":"inv_123","amount":4200,"currency":"EUR"}';
const RUN = `bench${process.pid.toString(36)}${Date.now().toString(36)}`;

/** One way of doing fresh and replayed operations, measured side by side. */
interface Variant {
  name: string;
  /** The floor row that this variant is compared with (undefined: it is a floor). */
  floor?: string;
  fresh(key: string): Promise<void>;
  replay(key: string): Promise<void>;
}

interface Sample {
  opsPerSecond: number;
  p50: number;
  p99: number;
  /** Lowest and highest ops/s over the rounds (on the median only). */
  range?: [number, number];
}

function hexKey(prefix: string, n: number): string {
  return createHash('sha256').update(`${prefix}:${n}`).digest('hex');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

/** Runs `op` on `concurrency` lanes for SECONDS; keys come from `nextKey`. */
async function measure(
  concurrency: number,
  nextKey: () => string,
  op: (key: string) => Promise<void>,
): Promise<Sample> {
  const latencies: number[] = [];
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
  latencies.sort((a, b) => a - b);
  return {
    opsPerSecond: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

function median(samples: Sample[]): Sample {
  const sorted = [...samples].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
  const middle = sorted[Math.floor(sorted.length / 2)] as Sample;
  const low = sorted[0]?.opsPerSecond ?? middle.opsPerSecond;
  const high = sorted[sorted.length - 1]?.opsPerSecond ?? middle.opsPerSecond;
  return { ...middle, range: [low, high] };
}

interface Row {
  server: string;
  variant: Variant;
  concurrency: number;
  fresh: Sample;
  replay: Sample;
}

/** Measures every variant of one server at each concurrency, interleaved over rounds. */
async function benchServer(server: string, variants: Variant[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const concurrency of CONCURRENCY) {
    const fresh = new Map<string, Sample[]>();
    const replay = new Map<string, Sample[]>();
    const done = new Map<string, string[]>(variants.map((v) => [v.name, []]));
    let counter = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const variant of variants) {
        const keys = done.get(variant.name) as string[];
        const prefix = `${RUN}:${server}:${variant.name}:${concurrency}`;
        const f = await measure(
          concurrency,
          () => hexKey(prefix, counter++),
          async (key) => {
            await variant.fresh(key);
            keys.push(key);
          },
        );
        let next = 0;
        const r = await measure(
          concurrency,
          () => keys[next++ % keys.length] as string,
          (key) => variant.replay(key),
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
function storeVariant(name: string, floor: string, store: IdempotencyStore): Variant {
  return {
    name,
    floor,
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

/** Fresh and replay through idempotent() on a store (keys hashed again by the core). */
function coreVariant(name: string, floor: string, store: IdempotencyStore): Variant {
  const invoice = idempotent(
    async (input: { id: string; amount: number }) => {
      return { invoice: `inv_${input.id.slice(0, 8)}`, amount: input.amount };
    },
    { store, key: 'id', scope: 'bench', heartbeat: false },
  );
  return {
    name,
    floor,
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

async function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function benchPostgres(): Promise<Row[]> {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: POOL_SIZE });
  pool.on('error', () => {});
  const schema = RUN;
  try {
    const tables = { raw: 'raw', store: 'store', batched: 'batched', core: 'core', coreb: 'coreb' };
    for (const table of Object.values(tables)) {
      await createPostgresStore(pool, { schema, table }).createSchema();
    }
    const raw = `"${schema}"."raw"`;
    const now = `floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint`;
    const floor: Variant = {
      name: 'raw pg (floor)',
      async fresh(key) {
        const inserted = await pool.query(
          `INSERT INTO ${raw} AS r (key, fingerprint, status, token, attempts, lease_until,
             expires_at, steps, created_at, updated_at)
           VALUES ($1, $2, 'in_progress', ${now} * 1000, 1, ${now} + 30000, ${now} + 86400000,
             '{}', ${now}, ${now})
           ON CONFLICT (key) DO UPDATE SET token = r.token + 1, lease_until = excluded.lease_until
             WHERE r.expires_at <= excluded.created_at
           RETURNING token`,
          [key, FINGERPRINT],
        );
        const token = inserted.rows[0]?.token;
        if (token === undefined) throw new Error('raw pg: not acquired');
        await pool.query(
          `UPDATE ${raw} SET status = 'completed', result = $3, lease_until = 0,
             expires_at = ${now} + 86400000, updated_at = ${now}
           WHERE key = $1 AND token = $2 AND status = 'in_progress'`,
          [key, token, RESULT],
        );
      },
      async replay(key) {
        const found = await pool.query(`SELECT * FROM ${raw} WHERE key = $1`, [key]);
        if (found.rows[0]?.result !== RESULT) throw new Error('raw pg: no stored result');
      },
    };
    const store = createPostgresStore(pool, { schema, table: tables.store, batch: false });
    const batched = createPostgresStore(pool, { schema, table: tables.batched });
    const core = createPostgresStore(pool, { schema, table: tables.core, batch: false });
    const coreBatched = createPostgresStore(pool, { schema, table: tables.coreb });
    return await benchServer('postgres', [
      floor,
      storeVariant('postgres store', floor.name, batched),
      storeVariant('postgres store, unbatched', floor.name, store),
      coreVariant('idempotent() on postgres', floor.name, coreBatched),
      coreVariant('idempotent() on pg, unbatched', floor.name, core),
    ]);
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  }
}

async function benchMysql(): Promise<Row[]> {
  const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: POOL_SIZE });
  const tables = {
    raw: `${RUN}_raw`,
    store: `${RUN}_store`,
    batched: `${RUN}_batched`,
    core: `${RUN}_core`,
    coreb: `${RUN}_coreb`,
  };
  try {
    for (const table of Object.values(tables)) {
      await createMysqlStore(pool, { table }).createSchema();
    }
    const raw = `\`${tables.raw}\``;
    const us = `TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))`;
    const ms = `(${us} DIV 1000)`;
    const floor: Variant = {
      name: 'raw mysql (floor)',
      async fresh(key) {
        const [inserted] = await pool.query(
          `INSERT INTO ${raw} (\`key\`, fingerprint, status, token, attempts, lease_until,
             expires_at, steps, created_at, updated_at)
           VALUES (?, ?, 'in_progress', LAST_INSERT_ID(${us}), 1, ${ms} + 30000, ${ms} + 86400000,
             '{}', ${ms}, ${ms})
           ON DUPLICATE KEY UPDATE token = IF(expires_at <= ${ms}, LAST_INSERT_ID(token + 1), token)`,
          [key, FINGERPRINT],
        );
        const token = (inserted as { insertId: number }).insertId;
        if (!token) throw new Error('raw mysql: not acquired');
        await pool.query(
          `UPDATE ${raw} SET status = 'completed', result = ?, lease_until = 0,
             expires_at = ${ms} + 86400000, updated_at = ${ms}
           WHERE \`key\` = ? AND token = ? AND status = 'in_progress'`,
          [RESULT, key, token],
        );
      },
      async replay(key) {
        const [found] = await pool.query(`SELECT * FROM ${raw} WHERE \`key\` = ?`, [key]);
        if ((found as Array<{ result?: string }>)[0]?.result !== RESULT) {
          throw new Error('raw mysql: no stored result');
        }
      },
    };
    return await benchServer('mysql', [
      floor,
      storeVariant('mysql store', floor.name, createMysqlStore(pool, { table: tables.batched })),
      storeVariant(
        'mysql store, unbatched',
        floor.name,
        createMysqlStore(pool, { table: tables.store, batch: false }),
      ),
      coreVariant(
        'idempotent() on mysql',
        floor.name,
        createMysqlStore(pool, { table: tables.coreb }),
      ),
      coreVariant(
        'idempotent() on mysql, unbatched',
        floor.name,
        createMysqlStore(pool, { table: tables.core, batch: false }),
      ),
    ]);
  } finally {
    await pool.query(
      `DROP TABLE IF EXISTS ${Object.values(tables)
        .map((t) => `\`${t}\``)
        .join(', ')}`,
    );
    await pool.query(
      `DROP TABLE IF EXISTS ${Object.values(tables)
        .map((t) => `\`${t}_schema_version\``)
        .join(', ')}`,
    );
    await pool.end();
  }
}

function printTable(rows: Row[]): void {
  const floors = new Map<string, Row>();
  for (const row of rows) {
    if (row.variant.floor === undefined) floors.set(`${row.variant.name}@${row.concurrency}`, row);
  }
  const header = [
    'variant',
    'c',
    'fresh ops/s',
    '(min-max)',
    'p50 ms',
    'p99 ms',
    'vs floor',
    'replay ops/s',
    '(min-max)',
    'p50 ms',
    'p99 ms',
    'vs floor',
  ];
  const count = (n: number) => Math.round(n).toLocaleString('en-US');
  const range = (sample: Sample) =>
    sample.range === undefined ? '' : `${count(sample.range[0])}-${count(sample.range[1])}`;
  const lines = rows.map((row) => {
    const floor =
      row.variant.floor === undefined
        ? undefined
        : floors.get(`${row.variant.floor}@${row.concurrency}`);
    const ratio = (mine: number, theirs: number | undefined) =>
      theirs === undefined ? '' : `${Math.round((mine / theirs) * 100)}%`;
    return [
      row.variant.name,
      String(row.concurrency),
      count(row.fresh.opsPerSecond),
      range(row.fresh),
      row.fresh.p50.toFixed(2),
      row.fresh.p99.toFixed(2),
      ratio(row.fresh.opsPerSecond, floor?.fresh.opsPerSecond),
      count(row.replay.opsPerSecond),
      range(row.replay),
      row.replay.p50.toFixed(2),
      row.replay.p99.toFixed(2),
      ratio(row.replay.opsPerSecond, floor?.replay.opsPerSecond),
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

const rows: Row[] = [];
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
console.log(
  `SQL stores: ${SECONDS}s per measurement, median of ${ROUNDS} interleaved rounds (min-max beside it), pool ${POOL_SIZE} connections; load average ${load()} on ${cpus().length} CPUs`,
);
if (ONLY === undefined || ONLY === 'postgres') {
  if (await reachable(POSTGRES_URL)) rows.push(...(await benchPostgres()));
  else console.log(`PostgreSQL not reachable at ${POSTGRES_URL}: skipped`);
}
if (ONLY === undefined || ONLY === 'mysql') {
  if (await reachable(MYSQL_URL)) rows.push(...(await benchMysql()));
  else console.log(`MySQL/MariaDB not reachable at ${MYSQL_URL}: skipped`);
}
printTable(rows);
console.log(`load average at the end: ${load()}`);
