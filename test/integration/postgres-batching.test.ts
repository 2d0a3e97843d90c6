import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BeginResult } from '../../src/idempotency/store.js';
import { KeyBatcher } from '../../src/stores/key-batcher.js';
import { createPostgresStore } from '../../src/stores/postgres/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

/*
 * Batching of the PostgreSQL store. First the batcher alone (no server): its invariants over
 * random call patterns. Then the store on the real server: calls on repeated keys, submitted
 * together, still give exactly one acquisition per key, and stale completes in the same
 * batches write nothing.
 */

interface Call {
  key: string;
  /** Microtasks the fake statement takes, so batches overlap in many ways. */
  delay: number;
  fails: boolean;
  weight: number;
}

async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

describe('KeyBatcher invariants', () => {
  it('settles every call once, never puts a key twice in a batch, respects the size, weight and in-flight bounds (idle calls alone or not, either gathering)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            key: fc.constantFrom('a', 'b', 'c', 'd'),
            delay: fc.nat(5),
            fails: fc.boolean(),
            weight: fc.nat(10),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(3),
        fc.boolean(),
        fc.constantFrom('microtask' as const, 'turn' as const),
        fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
        async (calls, maxBatchSize, maxInFlight, spread, idleRunsAlone, gather, maxBatchWeight) => {
          let inFlight = 0;
          let peak = 0;
          const batches: Call[][] = [];
          const statement = async (items: Call[]): Promise<string[]> => {
            batches.push(items);
            inFlight++;
            peak = Math.max(peak, inFlight);
            await ticks(Math.max(...items.map((i) => i.delay)));
            inFlight--;
            if (items.some((i) => i.fails)) throw new Error(`failed ${items.length}`);
            return items.map((i) => `done ${i.key}`);
          };
          let ones = 0;
          const batcher = new KeyBatcher<Call, string>({
            maxBatchSize,
            maxInFlight,
            keyOf: (c) => c.key,
            runOne: async (item) => {
              ones++;
              return (await statement([item]))[0] as string;
            },
            runMany: statement,
            idleRunsAlone,
            gather,
            ...(maxBatchWeight === undefined ? {} : { maxBatchWeight, weightOf: (c) => c.weight }),
          });
          // Calls arrive over a few microtasks, not all in one tick.
          const settled = calls.map(async (call, i) => {
            await ticks(spread === 0 ? 0 : i % (spread + 1));
            return batcher.submit(call).then(
              (value) => ({ ok: true as const, value }),
              (error: Error) => ({ ok: false as const, error }),
            );
          });
          const outcomes = await Promise.all(settled);
          await batcher.settled();

          expect(batches.flat()).toHaveLength(calls.length);
          for (const batch of batches) {
            expect(batch.length).toBeLessThanOrEqual(maxBatchSize);
            expect(new Set(batch.map((c) => c.key)).size).toBe(batch.length);
            // Over the weight only when one call alone is: a call always goes.
            const weight = batch.reduce((sum, c) => sum + c.weight, 0);
            if (maxBatchWeight !== undefined && batch.length > 1) {
              expect(weight).toBeLessThanOrEqual(maxBatchWeight);
            }
          }
          expect(peak).toBeLessThanOrEqual(maxInFlight);
          expect(ones).toBe(batches.filter((b) => b.length === 1).length);
          for (const [i, call] of calls.entries()) {
            const outcome = outcomes[i];
            const batch = batches.find((b) => b.includes(call));
            expect(batch).toBeDefined();
            // A call fails exactly when its own batch failed.
            if (batch?.some((c) => c.fails)) expect(outcome?.ok).toBe(false);
            else expect(outcome).toEqual({ ok: true, value: `done ${call.key}` });
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('with idleRunsAlone, a call on an idle batcher runs at once; the rest of its tick share a batch', async () => {
    const log: string[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const batcher = new KeyBatcher<string, string>({
      maxBatchSize: 10,
      maxInFlight: 2,
      keyOf: (key) => key,
      runOne: async (key) => {
        log.push(`one ${key}`);
        await gate;
        return key;
      },
      runMany: async (keys) => {
        log.push(`many ${keys.join(',')}`);
        return keys;
      },
      idleRunsAlone: true,
    });
    const first = batcher.submit('a');
    expect(log).toEqual(['one a']); // started within submit, before any microtask
    const rest = ['b', 'c', 'a'].map((key) => batcher.submit(key));
    expect(log).toEqual(['one a']);
    await ticks(2);
    // b, c and the repeated a leave together while the first a is still running: a repeated
    // key is never in one batch twice, but may run beside an earlier call, as unbatched calls do.
    expect(log).toEqual(['one a', 'many b,c,a']);
    let idle = false;
    const settled = batcher.settled().then(() => {
      idle = true;
    });
    await ticks(2);
    expect(idle).toBe(false); // the lone call is still running
    release();
    expect(await first).toBe('a');
    expect(await Promise.all(rest)).toEqual(['b', 'c', 'a']);
    await settled;
    expect(idle).toBe(true);
    // Idle again: the next call goes alone at once.
    void batcher.submit('d');
    expect(log.at(-1)).toBe('one d');
  });
});

const schema = `${RUN_ID}_pgbt`;
const FP = 'b'.repeat(64);

await describeWithService('postgres', 'postgres store batching on the server', () => {
  let pool: pg.Pool;
  let round = 0;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 6 });
    pool.on('error', () => {});
    await createPostgresStore(pool, { schema, table: 'records' }).createSchema();
  });

  afterAll(async () => {
    await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool?.end();
  });

  it('repeated keys submitted together: one acquisition per key; stale completes write nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.nat(5), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 8 }),
        async (picks, maxBatchSize) => {
          const stores = [0, 1].map(() =>
            createPostgresStore(pool, {
              schema,
              table: 'records',
              batch: { maxBatchSize, maxInFlight: 2 },
            }),
          );
          const prefix = `r${++round}`;
          const keys = picks.map((n) => `${prefix}-${n}`);
          const begun = await Promise.all(
            keys.map((key, i) => (stores[i % 2] ?? stores[0])?.begin(key, FP, 60_000, 60_000)),
          );
          const winners = new Map<string, Extract<BeginResult, { kind: 'acquired' }>>();
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

          // The holder's complete and a stale one per key, in the same batching window.
          const completes = await Promise.all(
            [...winners].flatMap(([key, won], i) => [
              (stores[i % 2] ?? stores[0])?.complete(key, won.token, `"${key}"`, 60_000),
              (stores[(i + 1) % 2] ?? stores[0])?.complete(key, won.token - 1, '"stale"', 60_000),
            ]),
          );
          expect(completes.map((c) => c?.kind)).toEqual(
            [...winners].flatMap(() => ['ok', 'lease_lost']),
          );
          const { rows } = await pool.query(
            `SELECT key, result, attempts, token::text AS token FROM "${schema}"."records"
             WHERE starts_with(key, $1)`,
            [`${prefix}-`],
          );
          expect(rows).toHaveLength(winners.size);
          for (const row of rows) {
            expect(row).toEqual({
              key: row.key,
              result: `"${row.key}"`,
              attempts: 1,
              token: String(winners.get(row.key)?.token),
            });
          }
          await Promise.all(stores.map((s) => s.close?.()));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('one unreadable record in a batch fails its own begin only; the others learn they acquired', async () => {
    const store = createPostgresStore(pool, { schema, table: 'records' });
    const corrupt = `corrupt-${++round}`;
    const first = await store.begin(corrupt, FP, 30_000, 60_000);
    if (first.kind !== 'acquired') throw new Error('expected to acquire');
    await store.complete(corrupt, first.token, '"r"', 60_000);
    // Edited by hand into something no store writes: a step that is not text.
    await pool.query(`UPDATE "${schema}".records SET steps = '{"s": 1}'::jsonb WHERE key = $1`, [
      corrupt,
    ]);
    // The first call of the tick runs alone (idle batcher); the rest share one statement.
    const keys = [`warmup-${round}`, corrupt, `innocent-${round}-1`, `innocent-${round}-2`];
    const outcomes = await Promise.allSettled(keys.map((k) => store.begin(k, FP, 30_000, 60_000)));
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value.kind : o.reason.code))).toEqual([
      'acquired',
      'RECORD_CORRUPT',
      'acquired',
      'acquired',
    ]);
  });

  it('a takeover of a record whose token or attempts no store writes fails its own begin only, writing nothing', async () => {
    // Its + 1 would overflow the column and fail the whole statement, every key with it.
    const store = createPostgresStore(pool, { schema, table: 'records' });
    for (const [column, value] of [
      ['token', '9223372036854775807'],
      ['attempts', '2147483647'],
    ] as const) {
      const corrupt = `overflow-${column}-${++round}`;
      await store.begin(corrupt, FP, 1, 60_000);
      await pool.query(`UPDATE "${schema}".records SET ${column} = ${value} WHERE key = $1`, [
        corrupt,
      ]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const keys = [`warmup-${round}`, corrupt, `innocent-${round}-1`, `innocent-${round}-2`];
      const outcomes = await Promise.allSettled(
        keys.map((k) => store.begin(k, FP, 30_000, 60_000)),
      );
      expect(
        outcomes.map((o) => (o.status === 'fulfilled' ? o.value.kind : o.reason.code)),
        column,
      ).toEqual(['acquired', 'RECORD_CORRUPT', 'acquired', 'acquired']);
      // Alone too, and the row is as it was.
      await expect(store.begin(corrupt, FP, 30_000, 60_000)).rejects.toMatchObject({
        code: 'RECORD_CORRUPT',
      });
      const { rows } = await pool.query(
        `SELECT ${column}::text AS v FROM "${schema}".records WHERE key = $1`,
        [corrupt],
      );
      expect(rows[0]?.v).toBe(value);
    }
  });
});
