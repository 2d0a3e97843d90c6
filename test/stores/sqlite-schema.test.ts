/**
 * Schema migrations of the SQLite store, from files written the way an older version wrote
 * them (the DDL below is version 1 as it shipped, not taken from the source).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/idempotency/index.js';
import { SCHEMA_VERSION, createSqliteStore } from '../../src/stores/sqlite/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const FP = 'f'.repeat(64);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-schema-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A version 1 file: the records table WITHOUT ROWID, its trigger and the meta rows. */
function writeVersion1(path: string, table: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE reprocess_meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
    CREATE TABLE ${table} (
      key TEXT PRIMARY KEY NOT NULL,
      fingerprint TEXT NOT NULL,
      status TEXT NOT NULL,
      token INTEGER NOT NULL,
      attempts INTEGER NOT NULL,
      lease_until INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      result TEXT,
      error TEXT,
      steps TEXT NOT NULL DEFAULT '{}',
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TRIGGER ${table}_token_high_water AFTER DELETE ON ${table} BEGIN
      UPDATE reprocess_meta SET value = max(value, OLD.token) WHERE name = 'token_high_water:${table}';
    END;
    INSERT INTO reprocess_meta (name, value) VALUES ('token_high_water:${table}', 0);
    INSERT INTO reprocess_meta (name, value) VALUES ('schema_version:${table}', 1);
  `);
  return db;
}

function version(path: string, table: string): number {
  const db = new Database(path, { readonly: true });
  const row = db
    .prepare('SELECT value FROM reprocess_meta WHERE name = ?')
    .get(`schema_version:${table}`) as { value: number };
  db.close();
  return row.value;
}

describe('sqlite store: schema migrations', () => {
  it('migrates a version 1 file: same records, same keys, fencing and high-water kept', async () => {
    const path = join(dir, 'v1.sqlite');
    const table = 'reprocess_idempotency';
    const clock = new FakeClock();
    const now = clock.now();
    const raw = writeVersion1(path, table);
    const insert = raw.prepare(`INSERT INTO ${table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // Keys as the core stores them: SHA-256 hex of the scope and the caller's key.
    const done = sha256Hex('charge/order-1');
    const running = sha256Hex('charge/order-2');
    const failed = sha256Hex('charge/order-3');
    const gone = sha256Hex('charge/order-4');
    const T = now * 1000;
    insert.run(done, FP, 'completed', T + 1, 1, 0, now + 60_000, '"r1"', null, '{}', now, now);
    insert.run(
      running,
      FP,
      'in_progress',
      T + 2,
      2,
      now + 30_000,
      now + 60_000,
      null,
      null,
      '{"charge":"\\"ch_1\\""}',
      now,
      now,
    );
    insert.run(failed, FP, 'failed', T + 3, 1, 0, now + 60_000, null, '"boom"', '{}', now, now);
    insert.run(
      gone,
      FP,
      'completed',
      T + 9_000_000,
      1,
      0,
      now + 60_000,
      '"r4"',
      null,
      '{}',
      now,
      now,
    );
    // A delete under version 1 raised the high-water mark.
    raw.prepare(`DELETE FROM ${table} WHERE key = ?`).run(gone);
    const before = raw.prepare(`SELECT * FROM ${table} ORDER BY key`).all();
    raw.close();

    const store = createSqliteStore({ path, clock });
    expect((await store.get(done))?.result).toBe('"r1"');
    expect(version(path, table)).toBe(SCHEMA_VERSION);

    const check = new Database(path, { readonly: true });
    expect(check.prepare(`SELECT * FROM ${table} ORDER BY key`).all()).toEqual(before);
    const sql = (
      check.prepare(`SELECT sql FROM sqlite_master WHERE name = ?`).get(table) as {
        sql: string;
      }
    ).sql;
    expect(sql).not.toMatch(/WITHOUT ROWID/i);
    expect(
      check
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?`)
        .all(table),
    ).toEqual([{ name: `${table}_token_high_water` }]);
    expect(
      check.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name = ?`).get(`${table}_v2`),
    ).toEqual({ n: 0 });
    check.close();

    // Records read back as before, and the in-progress one is still fenced by its token.
    expect(await store.get(running)).toMatchObject({
      status: 'in_progress',
      token: T + 2,
      attempts: 2,
      steps: { charge: '"ch_1"' },
    });
    expect(await store.get(failed)).toMatchObject({ status: 'failed', error: '"boom"' });
    expect(await store.complete(running, T + 1, '"stale"', 60_000)).toEqual({
      kind: 'lease_lost',
    });
    expect(await store.complete(running, T + 2, '"r2"', 60_000)).toEqual({ kind: 'ok' });
    expect((await store.begin(done, FP, 1000, 60_000)).kind).toBe('existing');

    // The deleted key starts above the high-water mark written under version 1.
    const again = await store.begin(gone, FP, 1000, 60_000);
    expect(again.kind === 'acquired' && again.token > T + 9_000_000).toBe(true);
    // The trigger of version 2 keeps raising it.
    if (again.kind !== 'acquired') throw new Error('expected to acquire');
    expect(await store.delete(gone)).toBe(true);
    const third = await store.begin(gone, FP, 1000, 60_000);
    expect(third.kind === 'acquired' && third.token > again.token).toBe(true);

    expect((await store.list()).records.map((r) => r.key)).toEqual(
      [done, running, failed, gone].sort(),
    );
    await clock.advance(120_000);
    expect(await store.purgeExpired()).toBe(4);
    await store.close();

    // Opening a migrated file again writes nothing and keeps the version.
    const reopened = createSqliteStore({ path, clock });
    await reopened.createSchema();
    expect(version(path, table)).toBe(SCHEMA_VERSION);
    await reopened.close();
  });

  it('migrates each table of a shared file on its own', async () => {
    const path = join(dir, 'shared.sqlite');
    const raw = writeVersion1(path, 'payments');
    raw.exec(`
      CREATE TABLE emails (key TEXT PRIMARY KEY NOT NULL, fingerprint TEXT NOT NULL,
        status TEXT NOT NULL, token INTEGER NOT NULL, attempts INTEGER NOT NULL,
        lease_until INTEGER NOT NULL, expires_at INTEGER NOT NULL, result TEXT, error TEXT,
        steps TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO reprocess_meta (name, value) VALUES ('token_high_water:emails', 0);
      INSERT INTO reprocess_meta (name, value) VALUES ('schema_version:emails', 1);
    `);
    raw.close();
    const payments = createSqliteStore({ path, table: 'payments' });
    expect((await payments.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    expect(version(path, 'payments')).toBe(SCHEMA_VERSION);
    expect(version(path, 'emails')).toBe(1);
    const emails = createSqliteStore({ path, table: 'emails' });
    expect((await emails.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    expect(version(path, 'emails')).toBe(SCHEMA_VERSION);
    await payments.close();
    await emails.close();
  });

  it('migrates a table whose name plus _v2 is another records table of the file', async () => {
    const path = join(dir, 'neighbours.sqlite');
    writeVersion1(path, 'orders').close();
    const neighbour = createSqliteStore({ path, table: 'orders_v2' });
    expect((await neighbour.begin('n', FP, 1000, 60_000)).kind).toBe('acquired');
    const orders = createSqliteStore({ path, table: 'orders' });
    expect((await orders.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    expect(version(path, 'orders')).toBe(SCHEMA_VERSION);
    expect((await neighbour.get('n'))?.status).toBe('in_progress');
    await orders.close();
    await neighbour.close();
  });

  it('creates a new file at the current version, as a rowid table', async () => {
    const path = join(dir, 'new.sqlite');
    const store = createSqliteStore({ path });
    await store.createSchema();
    await store.close();
    expect(version(path, 'reprocess_idempotency')).toBe(SCHEMA_VERSION);
    const check = new Database(path, { readonly: true });
    const sql = (
      check.prepare(`SELECT sql FROM sqlite_master WHERE name = 'reprocess_idempotency'`).get() as {
        sql: string;
      }
    ).sql;
    expect(sql).not.toMatch(/WITHOUT ROWID/i);
    check.close();
  });
});
