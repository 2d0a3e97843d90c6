import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotent } from '../../src/idempotency/index.js';
import {
  SCHEMA_VERSION,
  createPostgresStore,
  openPostgresStore,
} from '../../src/stores/postgres/index.js';
import { codeOf, errorOf } from '../helpers/errors.js';
import { expectOneClosing } from '../helpers/closing.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

/*
 * The PostgreSQL store beyond the conformance suite: schema management, typed errors for bad
 * input and unreadable rows, the URL form, the unprepared path, and whole operations through
 * idempotent() with awkward keys and large results.
 */

const schema = `${RUN_ID}_pgd`;
const FP = 'a'.repeat(64);

await describeWithService('postgres', 'postgres store details', () => {
  let pool: pg.Pool;

  beforeAll(() => {
    pool = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 6 });
    pool.on('error', () => {});
  });

  afterAll(async () => {
    await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool?.end();
  });

  describe('schema', () => {
    it('creates table, purge index and version once, even from concurrent callers', async () => {
      const stores = Array.from({ length: 5 }, () =>
        createPostgresStore(pool, { schema, table: 'concurrent' }),
      );
      const results = await Promise.all(stores.map((s) => s.createSchema()));
      for (const result of results) expect(result.version).toBe(SCHEMA_VERSION);
      // Exactly one caller applied the migration; the others found it done.
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      const { rows } = await pool.query(
        `SELECT version FROM "${schema}"."concurrent_schema_version"`,
      );
      expect(rows).toEqual([{ version: 1 }]);
      const index = await pool.query('SELECT indexdef FROM pg_indexes WHERE indexname = $1', [
        'concurrent_expires_at_idx',
      ]);
      expect(index.rows[0]?.indexdef).toContain('(expires_at)');
      expect(await stores[0]?.createSchema()).toEqual({
        table: `"${schema}"."concurrent"`,
        version: 1,
        applied: [],
      });
    });

    it('concurrent callers on one pool create it again after it was dropped', async () => {
      // The pool's connections used the schema before it went: a caller that waits on the
      // advisory lock must still see what the first one created, not collide with it.
      const again = `${schema}_again`;
      const create = () =>
        Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            createPostgresStore(pool, { schema: again, table: `t${i % 2}` }).createSchema(),
          ),
        );
      try {
        await create();
        for (let round = 0; round < 3; round++) {
          await pool.query(`DROP SCHEMA "${again}" CASCADE`);
          const results = await create();
          for (const result of results) expect(result.version).toBe(SCHEMA_VERSION);
          expect(results.filter((r) => r.applied.length > 0)).toHaveLength(2);
        }
      } finally {
        await pool.query(`DROP SCHEMA IF EXISTS "${again}" CASCADE`);
      }
    });

    it('refuses a schema newer than this code', async () => {
      const store = createPostgresStore(pool, { schema, table: 'future' });
      await store.createSchema();
      await pool.query(`INSERT INTO "${schema}"."future_schema_version" (version) VALUES (99)`);
      const error = await errorOf(() => store.createSchema());
      expect(codeOf(error)).toBe('STORE_UNAVAILABLE');
      expect(String(error)).toContain('schema version 99, newer than this reprocess knows');
    });

    it('says what to do when the table is missing', async () => {
      const store = createPostgresStore(pool, { schema, table: 'never_created' });
      const error = await errorOf(() => store.begin('k', FP, 1000, 1000));
      expect(codeOf(error)).toBe('STORE_UNAVAILABLE');
      expect(String(error)).toContain('run createSchema()');
    });
  });

  describe('bad input is InvalidArgumentError naming the problem', () => {
    const store = () => createPostgresStore(pool, { schema, table: 'inputs' });
    it.each([
      ['a pool without query', () => createPostgresStore({} as never), 'pool must be'],
      ['a table name with SQL', () => createPostgresStore(pool, { table: 'x"; DROP' }), 'table'],
      ['a schema name with a dot', () => createPostgresStore(pool, { schema: 'a.b' }), 'schema'],
      ['a 49-character table', () => createPostgresStore(pool, { table: 'a'.repeat(49) }), '48'],
      [
        'a zero batch size',
        () => createPostgresStore(pool, { batch: { maxBatchSize: 0 } }),
        'maxBatchSize',
      ],
      ['an empty key', () => store().begin('', FP, 1000, 1000), 'key'],
      ['a 256-character key', () => store().begin('k'.repeat(256), FP, 1000, 1000), 'key'],
      ['a zero lease', () => store().begin('k', FP, 0, 1000), 'leaseMs'],
      ['a NaN ttl', () => store().begin('k', FP, 1000, Number.NaN), 'ttlMs'],
      ['a NUL in a result', () => store().complete('k', 1, 'a\u0000b', 1000), 'NUL'],
      ['a fractional token', () => store().release('k', 1.5), 'token'],
      ['a non-string step name', () => store().saveStep('k', 1, 7 as never, 'r'), 'step name'],
      ['an unknown status', () => store().list({ status: 'done' as never }), 'status'],
      ['a zero limit', () => store().list({ limit: 0 }), 'limit'],
      ['a forged cursor', () => store().list({ cursor: 'not a cursor!' }), 'cursor'],
      ['a negative purge limit', () => store().purgeExpired({ limit: -1 }), 'limit'],
      ['a non-postgres URL', () => openPostgresStore('mysql://x/y'), 'postgres://'],
      [
        'a ?batch= that is not boolean',
        () => openPostgresStore(`${SERVICES.postgres.url}?batch=maybe`),
        'batch',
      ],
    ])('%s', async (_, call, mention) => {
      const error = await errorOf(call);
      expect(codeOf(error), String(error)).toBe('INVALID_ARGUMENT');
      expect(String(error)).toContain(mention);
    });
  });

  describe('rows that cannot be read back are RecordCorruptError', () => {
    it.each([
      ['an unknown status', `status = 'done'`],
      ['steps that are not strings', `steps = '{"charge": 1}'::jsonb`],
      ['steps that are an array', `steps = '[]'::jsonb`],
      ['completed without a result', `status = 'completed', result = NULL`],
    ])('%s', async (name, change) => {
      const store = createPostgresStore(pool, { schema, table: 'corrupt' });
      await store.createSchema();
      const key = `corrupt ${name}`;
      const begun = await store.begin(key, FP, 60_000, 60_000);
      expect(begun.kind).toBe('acquired');
      // A foreign writer or a hand edit: the constraint allows what the store cannot read.
      await pool.query(
        `ALTER TABLE "${schema}"."corrupt" DROP CONSTRAINT IF EXISTS corrupt_status_check`,
      );
      await pool.query(`UPDATE "${schema}"."corrupt" SET ${change} WHERE key = $1`, [key]);
      expect(codeOf(await errorOf(() => store.get(key)))).toBe('RECORD_CORRUPT');
      expect(codeOf(await errorOf(() => store.begin(key, FP, 60_000, 60_000)))).toBe(
        'RECORD_CORRUPT',
      );
    });
  });

  describe('whole operations through idempotent()', () => {
    const awkward = [
      "it's 100% done; DROP TABLE x; --",
      'emoji 🎉 key with "quotes" and \\backslash',
      '$1 ? :name @p0 %s %_',
    ];
    // 256 KiB of UTF-8 in the value itself, with metacharacters at the end.
    const tail = '🎉\'"%\\';
    const big = `${'x'.repeat(256 * 1024 - Buffer.byteLength(tail))}${tail}`;

    for (const [variant, query] of [
      ['prepared, batched', `?schema=${schema}&table=e2e_a&batch=true`],
      ['unprepared', `?schema=${schema}&table=e2e_b`],
    ] as const) {
      it(`runs once and replays unchanged (${variant}, opened from a URL)`, async () => {
        const store = await openPostgresStore(`${SERVICES.postgres.url}${query}`, {
          ...(variant === 'unprepared' ? { preparedStatements: false } : {}),
        });
        try {
          expect(store.table).toBe(`"${schema}"."${query.split('table=')[1]?.split('&')[0]}"`);
          await store.createSchema();
          let runs = 0;
          const echo = idempotent(
            async (input: { id: string; payload: string }) => {
              runs++;
              return { id: input.id, payload: input.payload, big };
            },
            { store, key: 'id', scope: 'echo', maxResultBytes: 1024 * 1024 },
          );
          const first = await Promise.all(awkward.map((id) => echo.run({ id, payload: id })));
          const again = await Promise.all(awkward.map((id) => echo.run({ id, payload: id })));
          expect(runs).toBe(awkward.length);
          expect(first.map((o) => o.replayed)).toEqual(awkward.map(() => false));
          expect(again.map((o) => o.replayed)).toEqual(awkward.map(() => true));
          expect(Buffer.byteLength(big)).toBe(256 * 1024);
          for (const [i, id] of awkward.entries()) {
            expect(again[i]?.value).toEqual({ id, payload: id, big });
          }
        } finally {
          await store.close?.();
        }
      });
    }
  });

  it('closes a store opened from a URL once, however often close() is called', async () => {
    const store = await openPostgresStore(`${SERVICES.postgres.url}?schema=${schema}`);
    // pg's Pool.end() throws when called twice: every call shares the one closing.
    await expectOneClosing(() => store.close?.());
    expect(codeOf(await errorOf(() => store.get('k')))).toBe('STORE_UNAVAILABLE');
  });
});
