import fc from 'fast-check';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import type { BeginResult } from '../../src/idempotency/store.js';
import { createMysqlStore, openMysqlStore } from '../../src/stores/mysql/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { tableLock } from './fixtures/mysql-table-lock.js';
import { failure, isUnavailable } from './fixtures/store-failure.js';

/*
 * Batching of the MySQL store on the real MariaDB: calls on repeated keys, submitted
 * together from two store objects, give exactly one acquisition per key; stale, deleted and
 * oversized calls in the same batches neither fail nor corrupt the others; batched and
 * unbatched stores on separate pools race on the same keys; a connection killed mid-batch
 * fails every call of that batch (and only them) with StoreUnavailableError.
 */

const table = `${RUN_ID}_mybt`;
const url = SERVICES.mariadb.url;
const FP = 'b'.repeat(64);

type Acquired = Extract<BeginResult, { kind: 'acquired' }>;

await describeWithService('mariadb', 'mysql store batching on the server', () => {
  let pool: mysql.Pool;
  let round = 0;

  beforeAll(async () => {
    pool = mysql.createPool({ uri: url, connectionLimit: 6 });
    await createMysqlStore(pool, { table }).createSchema();
  });

  afterAll(async () => {
    await pool?.query(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_schema_version\``);
    await pool?.end();
  });

  async function rowsOf(prefix: string) {
    const [rows] = await pool.query(
      `SELECT CONVERT(\`key\` USING utf8mb4) AS \`key\`, status, result, error, attempts, token
       FROM \`${table}\` WHERE LEFT(\`key\`, ?) = ? ORDER BY \`key\``,
      [Buffer.byteLength(prefix), prefix],
    );
    return rows as Array<{
      key: string;
      status: string;
      result: string | null;
      error: string | null;
      attempts: number;
      token: number;
    }>;
  }

  it('repeated keys submitted together: one acquisition per key; stale and deleted finishes write nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.nat(7), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        async (picks, maxBatchSize, warm) => {
          const stores = [0, 1].map(() =>
            createMysqlStore(pool, { table, batch: { maxBatchSize, maxInFlight: 2 } }),
          );
          const prefix = `r${++round}`;
          if (warm) {
            // Twenty new keys first: the stores now send the INSERT first, and the repeated
            // keys below make some of those INSERTs fail on a duplicate.
            await Promise.all(
              Array.from({ length: 20 }, (_, i) =>
                (stores[i % 2] ?? stores[0])?.begin(`${prefix}-w${i}`, FP, 60_000, 60_000),
              ),
            );
          }
          const keys = picks.map((n) => `${prefix}-${n}`);
          const begun = await Promise.all(
            keys.map((key, i) => (stores[i % 2] ?? stores[0])?.begin(key, FP, 60_000, 60_000)),
          );
          const winners = new Map<string, Acquired>();
          for (const [i, result] of begun.entries()) {
            if (result?.kind !== 'acquired') continue;
            expect(winners.has(keys[i] as string)).toBe(false);
            winners.set(keys[i] as string, result);
          }
          expect([...winners.keys()].sort()).toEqual([...new Set(keys)].sort());
          for (const [i, result] of begun.entries()) {
            if (result?.kind === 'existing') {
              expect(result.record.token).toBe(winners.get(keys[i] as string)?.token);
            }
          }

          // One key is deleted under its holder: its finish must find nothing to write.
          const entries = [...winners];
          const [gone] = entries[entries.length - 1] ?? [];
          if (entries.length > 1 && gone !== undefined) {
            await stores[0]?.delete(gone);
          }
          // The holder's finish (complete or fail) and a stale one per key, in one window.
          const finishes = await Promise.all(
            entries.flatMap(([key, won], i) => {
              const mine = stores[i % 2] ?? stores[0];
              const other = stores[(i + 1) % 2] ?? stores[0];
              return [
                i % 3 === 2
                  ? mine?.fail(key, won.token, `"e ${key}"`, 60_000)
                  : mine?.complete(key, won.token, `"${key}"`, 60_000),
                other?.complete(key, won.token - 1, '"stale"', 60_000),
              ];
            }),
          );
          expect(finishes.map((c) => c?.kind)).toEqual(
            entries.flatMap(([key]) => [
              entries.length > 1 && key === gone ? 'lease_lost' : 'ok',
              'lease_lost',
            ]),
          );
          const rows = (await rowsOf(`${prefix}-`)).filter((r) => !r.key.includes('-w'));
          const kept = entries.filter(([key]) => !(entries.length > 1 && key === gone));
          expect(rows).toHaveLength(kept.length);
          for (const row of rows) {
            const i = entries.findIndex(([key]) => key === row.key);
            const failed = i % 3 === 2;
            expect(row).toEqual({
              key: row.key,
              status: failed ? 'failed' : 'completed',
              result: failed ? null : `"${row.key}"`,
              error: failed ? `"e ${row.key}"` : null,
              attempts: 1,
              token: winners.get(row.key)?.token,
            });
          }
          await Promise.all(stores.map((s) => s.close?.()));
        },
      ),
      { numRuns: 25 },
    );
  }, 120_000);

  it('an oversized result goes alone; a corrupt record fails only its own begin', async () => {
    const store = createMysqlStore(pool, { table, batch: { maxBatchSize: 16, maxInFlight: 1 } });
    const prefix = 'odd';
    const keys = Array.from({ length: 6 }, (_, i) => `${prefix}-${i}`);
    const held = (await Promise.all(
      keys.map((k) => store.begin(k, FP, 60_000, 60_000)),
    )) as Acquired[];
    const big = `"${'x'.repeat(300_000)}"`;
    const done = await Promise.all(
      held.map((h, i) => store.complete(keys[i] as string, h.token, i === 0 ? big : '"s"', 60_000)),
    );
    expect(done.map((d) => d.kind)).toEqual(keys.map(() => 'ok'));
    expect((await store.get(keys[0] as string))?.result).toBe(big);

    await pool.query(`UPDATE \`${table}\` SET status = 'bogus' WHERE \`key\` = ?`, [keys[1]]);
    const replays = await Promise.all(
      keys.map((k) => failure(store.begin(k, FP, 60_000, 60_000).then((r) => r.kind))),
    );
    expect(isReprocessError(replays[1], 'RECORD_CORRUPT'), String(replays[1])).toBe(true);
    expect(replays.filter((r) => r === undefined)).toHaveLength(keys.length - 1);
    await store.close?.();
  });

  it("another key's unreadable record does not fail a batched complete: each call gets its own answer", async () => {
    const store = createMysqlStore(pool, { table, batch: true });
    const r = ++round;
    const good = await store.begin(`fin-good-${r}`, FP, 60_000, 60_000);
    await store.begin(`fin-bad-${r}`, FP, 60_000, 60_000);
    if (good.kind !== 'acquired') throw new Error('expected to acquire');
    await pool.query(`UPDATE \`${table}\` SET token = 9007199254740993 WHERE \`key\` = ?`, [
      `fin-bad-${r}`,
    ]);
    const outcomes = await Promise.allSettled([
      store.complete(`fin-first-${r}`, 9, '"x"', 60_000),
      store.complete(`fin-bad-${r}`, 123, '"x"', 60_000),
      store.complete(`fin-good-${r}`, good.token, '"y"', 60_000),
      store.complete(`fin-none-${r}`, 5, '"z"', 60_000),
    ]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value.kind : o.reason.code))).toEqual([
      'lease_lost',
      'lease_lost',
      'ok',
      'lease_lost',
    ]);
    expect((await store.get(`fin-good-${r}`))?.status).toBe('completed');
  });

  it('an expired record that cannot be read starts afresh in a batch, as it does alone', async () => {
    const batched = createMysqlStore(pool, { table, batch: { maxBatchSize: 16, maxInFlight: 1 } });
    const single = createMysqlStore(pool, { table, batch: false });
    const prefix = 'gone';
    const kinds = ['steps', 'status', 'result'];
    const keys = kinds.flatMap((kind) => [`${prefix}-${kind}-batched`, `${prefix}-${kind}-single`]);
    await Promise.all(keys.map((k) => single.begin(k, FP, 60_000, 60_000)));
    const like = (kind: string) => `${prefix}-${kind}-%`;
    await pool.query(`UPDATE \`${table}\` SET steps = 'not json' WHERE \`key\` LIKE ?`, [
      like('steps'),
    ]);
    await pool.query(`UPDATE \`${table}\` SET status = 'bogus' WHERE \`key\` LIKE ?`, [
      like('status'),
    ]);
    await pool.query(
      `UPDATE \`${table}\` SET status = 'completed', result = NULL WHERE \`key\` LIKE ?`,
      [like('result')],
    );
    await pool.query(`UPDATE \`${table}\` SET expires_at = 0 WHERE LEFT(\`key\`, ?) = ?`, [
      prefix.length,
      prefix,
    ]);
    // An opener goes alone; the calls after it share one batched read.
    const batchedKeys = [`${prefix}-opener`, ...keys.filter((k) => k.endsWith('-batched'))];
    const fromBatch = await Promise.all(
      batchedKeys.map((k) => batched.begin(k, FP, 60_000, 60_000).catch((e: unknown) => e)),
    );
    const alone: unknown[] = [];
    for (const k of keys.filter((key) => key.endsWith('-single'))) {
      alone.push(await single.begin(k, FP, 60_000, 60_000).catch((e: unknown) => e));
    }
    for (const result of [...fromBatch, ...alone]) {
      expect(result, String(result)).toMatchObject({ kind: 'acquired', attempts: 1, steps: {} });
    }
    await batched.close?.();
    await single.close?.();
  });

  it('a key changed right after a batched complete: the batch fails closed, its writes stand', async () => {
    const prefix = 'doubt';
    const keys = Array.from({ length: 4 }, (_, i) => `${prefix}-${i}`);
    // The pool, but a batched UPDATE is followed at once by a delete of the first key (as if
    // another process deleted it between the write and the store's read-back).
    const db = {
      query: async (sql: string, values?: Array<string | number>) => {
        const result = (await pool.query(sql, values)) as [unknown, unknown];
        if (sql.startsWith('UPDATE (')) {
          await pool.query(`DELETE FROM \`${table}\` WHERE \`key\` = ?`, [keys[0]]);
        }
        return result;
      },
    };
    const store = createMysqlStore(db, { table, batch: { maxBatchSize: 16, maxInFlight: 1 } });
    const held = (await Promise.all(
      keys.map((k) => store.begin(k, FP, 60_000, 60_000)),
    )) as Acquired[];
    // The first call on an idle store goes alone at once (here: a key with no record); the
    // four after it share one batch.
    const opener = store.complete(`${prefix}-opener`, 1, '"o"', 60_000);
    const outcomes = await Promise.all(
      keys.map((k, i) =>
        // The last one is stale: fewer rows match than calls, so the store reads back.
        failure(store.complete(k, (held[i]?.token ?? 0) - (i === 3 ? 1 : 0), '"r"', 60_000)),
      ),
    );
    expect((await opener).kind).toBe('lease_lost');
    for (const error of outcomes) expect(isUnavailable(error), String(error)).toBe(true);
    const rows = await rowsOf(`${prefix}-`);
    expect(rows.map((r) => [r.key, r.status])).toEqual([
      [keys[1], 'completed'],
      [keys[2], 'completed'],
      [keys[3], 'in_progress'],
    ]);
    await store.close?.();
  });

  it('batched and unbatched stores on four pools race on 400 keys: each key acquired once', async () => {
    const pools = [0, 1, 2, 3].map(() => mysql.createPool({ uri: url, connectionLimit: 3 }));
    try {
      const stores = pools.map((p, i) =>
        createMysqlStore(p, { table, ...(i % 2 === 0 ? { batch: { maxInFlight: 2 } } : {}) }),
      );
      const keys = Array.from({ length: 400 }, (_, i) => `race-${String(i).padStart(3, '0')}`);
      const results = await Promise.all(
        stores.map(async (store, worker) => {
          const order = worker % 2 === 1 ? [...keys].reverse() : keys;
          const acquired = new Map<string, number>();
          let next = 0;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              while (next < order.length) {
                const key = order[next++] as string;
                const r = await store.begin(key, FP, 600_000, 600_000);
                if (r.kind === 'acquired') acquired.set(key, r.token);
              }
            }),
          );
          return acquired;
        }),
      );
      const owner = new Map<string, number>();
      for (const acquired of results) {
        for (const [key, token] of acquired) {
          expect(owner.has(key), `${key} acquired twice`).toBe(false);
          owner.set(key, token);
        }
      }
      expect(owner.size).toBe(keys.length);
      expect(results.filter((r) => r.size > 0).length).toBeGreaterThan(1);
      const rows = await rowsOf('race-');
      expect(rows).toHaveLength(keys.length);
      for (const row of rows) {
        expect(row).toMatchObject({ status: 'in_progress', attempts: 1 });
        expect(row.token).toBe(owner.get(row.key));
      }
      await Promise.all(stores.map((s) => s.close?.()));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  }, 60_000);

  it('opened from a URL with ?batch=true: metacharacters round-trip through batched statements', async () => {
    const store = await openMysqlStore(`${url}?table=${table}&batch=true`);
    const keys = [
      "it's 100% done; DROP TABLE x; --",
      'emoji 🎉 key with "quotes" and \\backslash',
      '? ?? :name @p0 %s %_ `tick`',
      'trailing space ',
      'trailing space',
      '\u0000nul',
    ];
    try {
      const held = (await Promise.all(
        keys.map((k) => store.begin(k, `fp ${k}`, 60_000, 60_000)),
      )) as Acquired[];
      expect(held.map((h) => h.kind)).toEqual(keys.map(() => 'acquired'));
      const done = await Promise.all(
        keys.map((k, i) =>
          i % 2 === 0
            ? store.complete(k, held[i]?.token ?? 0, `"${k}" \\ ' \u0000`, 60_000)
            : store.fail(k, held[i]?.token ?? 0, `{"e":"${k}"}`, 60_000),
        ),
      );
      expect(done.map((d) => d.kind)).toEqual(keys.map(() => 'ok'));
      const again = await Promise.all(keys.map((k) => store.begin(k, `fp ${k}`, 60_000, 60_000)));
      for (const [i, k] of keys.entries()) {
        const r = again[i];
        if (r?.kind !== 'existing') throw new Error(`expected a replay of ${k}`);
        expect(r.record.key).toBe(k);
        expect(r.record.fingerprint).toBe(`fp ${k}`);
        if (i % 2 === 0) expect(r.record.result).toBe(`"${k}" \\ ' \u0000`);
        else expect(r.record.error).toBe(`{"e":"${k}"}`);
      }
    } finally {
      await store.close?.();
    }
  });

  const lock = tableLock(table);

  it('a connection KILLed mid-batch fails every call of the batch; the next calls work', async () => {
    const store = await openMysqlStore(url, {
      table,
      poolSize: 3,
      batch: { maxBatchSize: 64, maxInFlight: 1 },
    });
    const keys = Array.from({ length: 10 }, (_, i) => `kill-${i}`);
    try {
      // A batch of begins (one statement) killed while it waits. The first call on an idle
      // store goes alone at once: it waits first and is killed first; the ten calls queued
      // behind it (one statement at a time) then leave as one batch.
      let blocker = await lock.block();
      const opener = failure(store.begin('kill-opener', FP, 60_000, 60_000));
      const begins = keys.map((k) => failure(store.begin(k, FP, 60_000, 60_000)));
      await pool.query(`KILL ${await lock.waitingConnection(pool)}`);
      expect(isUnavailable(await opener)).toBe(true);
      await pool.query(`KILL ${await lock.waitingConnection(pool)}`);
      const errors = await Promise.all(begins);
      for (const error of errors) expect(isUnavailable(error), String(error)).toBe(true);
      await lock.unblock(blocker);
      const held = (await Promise.all(
        keys.map((k) => store.begin(k, FP, 60_000, 60_000)),
      )) as Acquired[];
      expect(held.map((h) => h.kind)).toEqual(keys.map(() => 'acquired'));

      // A batch of completes killed while it waits: nothing written, each holder can finish.
      blocker = await lock.block();
      const completeOpener = failure(store.complete('kill-opener', 1, '"o"', 60_000));
      const completes = keys.map((k, i) =>
        failure(store.complete(k, held[i]?.token ?? 0, '"r"', 60_000)),
      );
      await pool.query(`KILL ${await lock.waitingConnection(pool)}`);
      expect(isUnavailable(await completeOpener)).toBe(true);
      await pool.query(`KILL ${await lock.waitingConnection(pool)}`);
      for (const error of await Promise.all(completes)) {
        expect(isUnavailable(error), String(error)).toBe(true);
      }
      await lock.unblock(blocker);
      for (const k of keys) expect((await store.get(k))?.status).toBe('in_progress');
      const done = await Promise.all(
        keys.map((k, i) => store.complete(k, held[i]?.token ?? 0, '"r"', 60_000)),
      );
      expect(done.map((d) => d.kind)).toEqual(keys.map(() => 'ok'));
    } finally {
      await store.close?.();
    }
  });
});
