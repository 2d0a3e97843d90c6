import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotent } from '../../src/idempotency/index.js';
import {
  MYSQL_SCHEMA_VERSION,
  createMysqlStore,
  openMysqlStore,
} from '../../src/stores/mysql/index.js';
import { codeOf, errorOf } from '../helpers/errors.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

/*
 * The MySQL/MariaDB store beyond the conformance suite: schema management, exact key
 * comparison (no PAD SPACE, no case folding), typed errors for bad input and unreadable rows,
 * the URL form, and whole operations through idempotent() with awkward keys and large results.
 */

const prefix = `${RUN_ID}_myd`;
const FP = 'a'.repeat(64);

await describeWithService('mariadb', 'mysql store details', () => {
  let pool: mysql.Pool;
  const created = new Set<string>();
  const tableName = (name: string) => {
    const table = `${prefix}_${name}`;
    created.add(table).add(`${table}_schema_version`);
    return table;
  };
  let corruptTables = 0;

  beforeAll(() => {
    pool = mysql.createPool({ uri: SERVICES.mariadb.url, connectionLimit: 6 });
  });

  afterAll(async () => {
    if (created.size > 0) {
      await pool?.query(`DROP TABLE IF EXISTS ${[...created].map((t) => `\`${t}\``).join(', ')}`);
    }
    await pool?.end();
  });

  describe('schema', () => {
    it('creates the table with its purge index and version, then leaves them', async () => {
      const table = tableName('schema');
      const store = createMysqlStore(pool, { table });
      const results = await Promise.all([store.createSchema(), store.createSchema()]);
      for (const result of results) expect(result.version).toBe(MYSQL_SCHEMA_VERSION);
      // Exactly one caller applied the migration; the other found it done.
      expect(results.map((r) => r.applied).sort()).toEqual([[], [1]]);
      const [versions] = await pool.query(`SELECT version FROM \`${table}_schema_version\``);
      expect(versions).toEqual([{ version: 1 }]);
      const [index] = await pool.query(`SHOW INDEX FROM \`${table}\` WHERE Key_name = ?`, [
        `${table}_expires_at_idx`,
      ]);
      expect((index as Array<{ Column_name: string }>)[0]?.Column_name).toBe('expires_at');
      expect(await store.createSchema()).toEqual({
        table: `\`${table}\``,
        version: 1,
        applied: [],
      });
    });

    it('refuses a schema newer than this code', async () => {
      const table = tableName('future');
      const store = createMysqlStore(pool, { table });
      await store.createSchema();
      await pool.query(`INSERT INTO \`${table}_schema_version\` (version) VALUES (99)`);
      const error = await errorOf(() => store.createSchema());
      expect(codeOf(error)).toBe('STORE_UNAVAILABLE');
      expect(String(error)).toContain('schema version 99, newer than this reprocess knows');
    });

    it('says what to do when the table is missing', async () => {
      const store = createMysqlStore(pool, { table: `${prefix}_never_created` });
      const error = await errorOf(() => store.begin('k', FP, 1000, 1000));
      expect(codeOf(error)).toBe('STORE_UNAVAILABLE');
      expect(String(error)).toContain('run createSchema()');
    });

    it('qualifies the table with a database when given one', async () => {
      const table = tableName('qualified');
      const store = createMysqlStore(pool, { table, database: 'test' });
      expect(store.table).toBe(`\`test\`.\`${table}\``);
      await store.createSchema();
      expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    });
  });

  it('compares keys byte for byte: trailing spaces and case make other keys', async () => {
    // utf8mb4_bin would be PAD SPACE on MariaDB ('k' = 'k '); a _ci collation would fold case.
    const table = tableName('exact');
    const store = createMysqlStore(pool, { table });
    await store.createSchema();
    const keys = ['k', 'k ', 'K', 'k\t', 'ｋ'];
    const results = await Promise.all(keys.map((k) => store.begin(k, FP, 60_000, 60_000)));
    expect(results.map((r) => r.kind)).toEqual(keys.map(() => 'acquired'));
    for (const key of keys) expect((await store.get(key))?.key).toBe(key);
    const listed = await store.list();
    expect(listed.records.map((r) => r.key).sort()).toEqual([...keys].sort());
  });

  describe('bad input is InvalidArgumentError naming the problem', () => {
    const store = () => createMysqlStore(pool, { table: `${prefix}_inputs` });
    it.each([
      ['a pool without query', () => createMysqlStore({} as never), 'pool must be'],
      ['a table name with SQL', () => createMysqlStore(pool, { table: 'x`; DROP' }), 'table'],
      ['a database with a dot', () => createMysqlStore(pool, { database: 'a.b' }), 'database'],
      ['an empty key', () => store().begin('', FP, 1000, 1000), 'key'],
      // 64 emoji are 256 UTF-8 bytes: over the VARBINARY(255) key.
      ['a key over 255 bytes', () => store().begin('🎉'.repeat(64), FP, 1000, 1000), 'bytes'],
      ['a fingerprint over 255 bytes', () => store().begin('k', 'f'.repeat(256), 1, 1), 'finger'],
      ['a zero lease', () => store().begin('k', FP, 0, 1000), 'leaseMs'],
      ['a fractional token', () => store().complete('k', 2.5, 'r', 1000), 'token'],
      ['a non-string result', () => store().complete('k', 1, 5 as never, 1000), 'result'],
      // mysql2 would store a lone surrogate as U+FFFD: a batch could not tell its write again.
      [
        'a result with a lone surrogate',
        () => store().complete('k', 1, 'half \ud800', 1),
        'surrogate',
      ],
      [
        'a fingerprint with a lone surrogate',
        () => store().begin('k', 'fp\ud800', 1, 1),
        'surrogate',
      ],
      ['a step with a lone surrogate', () => store().saveStep('k', 1, 's', '\udc00'), 'surrogate'],
      ['an unknown status', () => store().list({ status: 'done' as never }), 'status'],
      ['a forged cursor', () => store().list({ cursor: '%%' }), 'cursor'],
      ['a negative purge limit', () => store().purgeExpired({ limit: -1 }), 'limit'],
      ['a non-mysql URL', () => openMysqlStore('postgres://x/y'), 'mysql://'],
    ])('%s', async (_, call, mention) => {
      const error = await errorOf(call);
      expect(codeOf(error), String(error)).toBe('INVALID_ARGUMENT');
      expect(String(error)).toContain(mention);
    });
  });

  describe('rows that cannot be read back are RecordCorruptError', () => {
    it.each([
      ['an unknown status', `status = 'done'`],
      ['steps that are not JSON', `steps = '{not json'`],
      ['steps that are not strings', `steps = '{"charge": 1}'`],
      ['a fingerprint that is not UTF-8', 'fingerprint = UNHEX("C3")'],
      ['failed without an error', `status = 'failed', error = NULL`],
    ])('%s', async (name, change) => {
      const table = tableName(`corrupt${++corruptTables}`);
      const store = createMysqlStore(pool, { table });
      await store.createSchema();
      const key = `corrupt ${name}`;
      expect((await store.begin(key, FP, 60_000, 60_000)).kind).toBe('acquired');
      await pool.query(`UPDATE \`${table}\` SET ${change} WHERE \`key\` = ?`, [key]);
      expect(codeOf(await errorOf(() => store.get(key)))).toBe('RECORD_CORRUPT');
      expect(codeOf(await errorOf(() => store.begin(key, FP, 60_000, 60_000)))).toBe(
        'RECORD_CORRUPT',
      );
    });
  });

  for (const prepared of [true, false]) {
    it(`runs whole operations once and replays them unchanged (${prepared ? 'prepared' : 'unprepared'}, opened from a URL)`, async () => {
      const table = tableName(`e2e_${prepared}`);
      const store = await openMysqlStore(`${SERVICES.mariadb.url}?table=${table}`, {
        preparedStatements: prepared,
      });
      const awkward = [
        "it's 100% done; DROP TABLE x; --",
        'emoji 🎉 key with "quotes" and \\backslash',
        '? ?? :name @p0 %s %_ `tick`',
      ];
      // 256 KiB of UTF-8 in the value itself, with metacharacters at the end.
      const tail = '🎉\'"%\\`';
      const big = `${'x'.repeat(256 * 1024 - Buffer.byteLength(tail))}${tail}`;
      try {
        expect(store.table).toBe(`\`${table}\``);
        await store.createSchema();
        let runs = 0;
        const echo = idempotent(
          async (input: { id: string }) => {
            runs++;
            return { id: input.id, big };
          },
          { store, key: 'id', scope: 'echo', maxResultBytes: 1024 * 1024 },
        );
        const first = await Promise.all(awkward.map((id) => echo.run({ id })));
        const again = await Promise.all(awkward.map((id) => echo.run({ id })));
        expect(runs).toBe(awkward.length);
        expect(first.map((o) => o.replayed)).toEqual(awkward.map(() => false));
        expect(again.map((o) => o.replayed)).toEqual(awkward.map(() => true));
        expect(Buffer.byteLength(big)).toBe(256 * 1024);
        for (const [i, id] of awkward.entries()) expect(again[i]?.value).toEqual({ id, big });
      } finally {
        await store.close?.();
      }
    });
  }

  it('a result or step past max_allowed_packet is RESULT_TOO_LARGE: recorded as failed, never run again', async () => {
    const table = tableName('packet');
    const store = createMysqlStore(pool, { table });
    await store.createSchema();
    const [rows] = await pool.query('SELECT @@max_allowed_packet AS m');
    const limit = Number((rows as Array<{ m: number }>)[0]?.m);
    const tooBig = 'x'.repeat(limit + 1024);
    let runs = 0;
    const charge = idempotent(
      async () => {
        runs += 1;
        return tooBig;
      },
      { store, key: 'id', scope: 'packet', lease: '200ms', maxResultBytes: 2 * limit },
    );
    expect(codeOf(await errorOf(() => charge({ id: 'big' })))).toBe('RESULT_TOO_LARGE');
    await new Promise((resolve) => setTimeout(resolve, 300)); // past the lease
    // Recorded as failed: the repeat replays the failure without running the effect.
    expect(codeOf(await errorOf(() => charge({ id: 'big' })))).toBe('RESULT_TOO_LARGE');
    expect(runs).toBe(1);
    // The pool is still fine (nothing was sent that would cut a connection).
    const begun = await store.begin('after', FP, 30_000, 60_000);
    expect(begun.kind).toBe('acquired');
    if (begun.kind !== 'acquired') return;
    expect(codeOf(await errorOf(() => store.saveStep('after', begun.token, 'step', tooBig)))).toBe(
      'RESULT_TOO_LARGE',
    );
  });
});
