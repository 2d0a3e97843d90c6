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
 * alike. Tables are created in a schema/table of this run and dropped at the end. The variants
 * through a store, the measurement and the table are shared with stores-kv.ts
 * (support/store-bench.ts); this table shows the min-max ops/s of the rounds beside each median.
 *
 *   npx tsx bench/stores-sql.ts            # both servers
 *   BENCH_ONLY=postgres npx tsx bench/stores-sql.ts
 */
import { cpus, loadavg } from 'node:os';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { createMysqlStore } from '../src/stores/mysql/index.js';
import { createPostgresStore } from '../src/stores/postgres/index.js';
import {
  benchServer,
  coreVariant,
  FINGERPRINT,
  ONLY,
  printTable,
  RESULT,
  ROUNDS,
  RUN,
  type Row,
  reachable,
  SECONDS,
  storeVariant,
  type Variant,
} from './support/store-bench.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const POOL_SIZE = 16;

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
    const compare = { floor: floor.name };
    return await benchServer('postgres', [
      floor,
      storeVariant('postgres store', compare, batched),
      storeVariant('postgres store, unbatched', compare, store),
      coreVariant('idempotent() on postgres', compare, coreBatched),
      coreVariant('idempotent() on pg, unbatched', compare, core),
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
    const compare = { floor: floor.name };
    return await benchServer('mysql', [
      floor,
      storeVariant('mysql store', compare, createMysqlStore(pool, { table: tables.batched })),
      storeVariant(
        'mysql store, unbatched',
        compare,
        createMysqlStore(pool, { table: tables.store, batch: false }),
      ),
      coreVariant(
        'idempotent() on mysql',
        compare,
        createMysqlStore(pool, { table: tables.coreb }),
      ),
      coreVariant(
        'idempotent() on mysql, unbatched',
        compare,
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

const rows: Row[] = [];
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
console.log(
  `SQL stores: ${SECONDS}s per measurement, median of ${ROUNDS} interleaved rounds (min-max beside it), pool ${POOL_SIZE} connections; load average ${load()} on ${cpus().length} CPUs`,
);
if (ONLY === undefined || ONLY === 'postgres') {
  if (await reachable(POSTGRES_URL, 5432)) rows.push(...(await benchPostgres()));
  else console.log(`PostgreSQL not reachable at ${POSTGRES_URL}: skipped`);
}
if (ONLY === undefined || ONLY === 'mysql') {
  if (await reachable(MYSQL_URL, 3306)) rows.push(...(await benchMysql()));
  else console.log(`MySQL/MariaDB not reachable at ${MYSQL_URL}: skipped`);
}
printTable(rows, ['ops', 'range', 'p50', 'p99', 'vsFloor']);
console.log(`load average at the end: ${load()}`);
