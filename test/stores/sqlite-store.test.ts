import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import {
  SCHEMA_VERSION,
  createSqliteStore,
  openSqliteStore,
  parseSqliteUrl,
} from '../../src/stores/sqlite/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const FP = 'f'.repeat(64);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-unit-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `work` and returns what it threw (failing when it does not throw). */
async function thrown(work: () => unknown): Promise<Error> {
  try {
    await work();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error, none was thrown');
}

describe('sqlite store: file and schema', () => {
  it('creates the file, its directory, WAL mode and a versioned schema on first use', async () => {
    const path = join(dir, 'nested', 'deeper', 'store.sqlite');
    const store = createSqliteStore({ path });
    await store.begin('k', FP, 1000, 60_000);
    await store.close();

    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    const version = raw
      .prepare(
        `SELECT value FROM reprocess_meta WHERE name = 'schema_version:reprocess_idempotency'`,
      )
      .get() as { value: number };
    expect(version.value).toBe(SCHEMA_VERSION);
    raw.close();
  });

  it('with createTable: false, a missing table is StoreUnavailableError and nothing is written; createSchema() still creates it', async () => {
    const path = join(dir, 'inspect.sqlite');
    const store = createSqliteStore({ path, table: 'payments', createTable: false });
    for (const call of [
      () => store.get('k'),
      () => store.list(),
      () => store.begin('k', FP, 1000, 60_000),
    ]) {
      const error = await thrown(call);
      expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE), String(error)).toBe(true);
      expect(error.message).toContain('no table "payments" in this file');
    }
    const raw = new Database(path, { readonly: true });
    expect(
      raw.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get(),
    ).toEqual({
      n: 0,
    });
    raw.close();
    await store.createSchema();
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
    expect(() => createSqliteStore({ path, createTable: 'no' as never })).toThrow(
      /createTable must be a boolean/,
    );
  });

  it('keeps several tables in one file, each with its own records', async () => {
    const path = join(dir, 'shared.sqlite');
    const payments = createSqliteStore({ path, table: 'payments' });
    const emails = createSqliteStore({ path, table: 'emails' });
    await payments.createSchema();
    await payments.createSchema();
    const a = await payments.begin('k', FP, 1000, 60_000);
    const b = await emails.begin('k', FP, 1000, 60_000);
    expect(a.kind).toBe('acquired');
    expect(b.kind).toBe('acquired');
    expect((await payments.list()).records).toHaveLength(1);
    await payments.close();
    await emails.close();
  });

  it('refuses a file that is not a database with a typed error', async () => {
    const path = join(dir, 'notes.sqlite');
    writeFileSync(path, 'these are my notes, not a database\n'.repeat(200));
    const error = await thrown(() => createSqliteStore({ path }));
    expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
    expect(error.message).toContain('not a SQLite database');
    expect(error.message).toContain(path);
  });

  it('refuses a schema newer than it understands', async () => {
    const path = join(dir, 'future.sqlite');
    const store = createSqliteStore({ path });
    await store.createSchema();
    await store.close();
    const raw = new Database(path);
    raw
      .prepare(
        `UPDATE reprocess_meta SET value = ? WHERE name = 'schema_version:reprocess_idempotency'`,
      )
      .run(SCHEMA_VERSION + 1);
    raw.close();

    const reopened = createSqliteStore({ path });
    const error = await thrown(() => reopened.begin('k', FP, 1000, 60_000));
    expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
    expect(error.message).toContain(
      `schema version ${SCHEMA_VERSION + 1}, newer than the ${SCHEMA_VERSION}`,
    );
    await reopened.close();
  });

  // Tests run as root, and chmod does not stop root. Two places that refuse root as well:
  // a path under /proc (a kernel file system where nothing can be created), and a directory
  // marked immutable with `chattr +i` (when the file system and capabilities allow it).
  it('gives a typed error for a location that cannot be written (/proc)', async () => {
    for (const path of ['/proc/self/reprocess-store.sqlite', '/proc/self/reprocess/store.sqlite']) {
      const error = await thrown(() => createSqliteStore({ path }));
      expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
      expect(error.message).toContain(path);
      expect(error.message).toMatch(/not writable|cannot create the directory/);
    }
  });

  it('gives a typed error for an immutable directory (chattr +i)', async (context) => {
    const locked = join(dir, 'locked');
    mkdirSync(locked);
    try {
      execFileSync('chattr', ['+i', locked], { stdio: 'ignore' });
    } catch {
      context.skip('chattr +i is not available here');
      return;
    }
    try {
      const error = await thrown(() => createSqliteStore({ path: join(locked, 'store.sqlite') }));
      expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
      expect(error.message).toMatch(/not writable/);
    } finally {
      execFileSync('chattr', ['-i', locked]);
    }
  });

  it('rejects bad options with InvalidArgumentError', () => {
    const bad: unknown[] = [
      { table: 'records; DROP TABLE x' },
      { table: '1abc' },
      { table: 'reprocess_meta' },
      { path: '' },
      { busyTimeoutMs: -1 },
      { busyRetries: 1.5 },
      { synchronous: 'off' },
    ];
    for (const options of bad) {
      expect(() => createSqliteStore(options as never), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
      );
    }
  });

  it('rejects bad arguments to every method with InvalidArgumentError', async () => {
    const store = createSqliteStore({ path: ':memory:' });
    const calls: Array<() => Promise<unknown>> = [
      () => store.begin('', FP, 1000, 1000),
      () => store.begin(42 as never, FP, 1000, 1000),
      () => store.begin('k', FP, Number.NaN, 1000),
      () => store.begin('k', FP, 1000, -5),
      () => store.complete('k', 1.5, 'r', 1000),
      () => store.fail('k', 1, undefined as never, 1000),
      () => store.saveStep('k', 1, 7 as never, 'r'),
      () => store.heartbeat('k', 1, Number.POSITIVE_INFINITY),
      // Durations the other stores refuse too: none, and one whose end SQLite could not keep
      // as an INTEGER (the record would no longer read back, nor would the whole list).
      () => store.begin('k', FP, 0, 1000),
      () => store.complete('k', 1, 'r', 0),
      () => store.release('k', 1, 1e20),
      () => store.fail('k', 1, 'e', 1e20),
      () => store.list({ limit: 0 }),
      () => store.list({ status: 'done' as never }),
      () => store.list({ cursor: '%%%' }),
      () => store.purgeExpired({ limit: -1 }),
    ];
    for (const call of calls) {
      const error = await thrown(call);
      expect(isReprocessError(error, ErrorCode.INVALID_ARGUMENT), String(call)).toBe(true);
    }
    await store.close();
  });

  it('answers StoreUnavailableError once closed', async () => {
    const store = createSqliteStore({ path: ':memory:' });
    await store.close();
    const error = await thrown(() => store.get('k'));
    expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
    expect(error.message).toContain('closed');
  });

  it('uses a connection you pass and leaves it open', async () => {
    const db = new Database(':memory:');
    const store = createSqliteStore({ database: db, table: 'ops' });
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT count(*) AS n FROM ops').get()).toEqual({ n: 1 });
    db.close();
  });
});

describe('sqlite store: durations', () => {
  it('takes a lease or TTL with a fraction of a millisecond, rounded up, and reads it back', async () => {
    const clock = new FakeClock(1_700_000_000_000);
    const store = createSqliteStore({ path: join(dir, 'fractions.sqlite'), clock });
    const begun = await store.begin('k', FP, 30_000.5, 86_400_000 / 7);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    expect(begun.leaseUntil).toBe(1_700_000_030_001);
    // A live lease answers "in progress", not a record no reader accepts.
    expect(await store.begin('k', FP, 30_000.5, 1_000)).toMatchObject({ kind: 'existing' });
    expect(await store.heartbeat('k', begun.token, 10_000.25)).toEqual({
      kind: 'ok',
      leaseUntil: 1_700_000_010_001,
    });
    expect(await store.complete('k', begun.token, '"done"', 86_400_000 / 7)).toEqual({
      kind: 'ok',
    });
    const record = await store.get('k');
    expect(record?.expiresAt).toBe(1_700_000_000_000 + Math.ceil(86_400_000 / 7));
    expect(record?.status).toBe('completed');
    await store.close();
  });
});

describe('sqlite store: a full disk', () => {
  it('a takeover whose commit fails for lack of space is an error, never "acquired"', async (context) => {
    const fs = join(dir, 'small-fs');
    mkdirSync(fs);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', fs], { stdio: 'ignore' });
    } catch {
      context.skip('cannot mount a small tmpfs here (needs root)');
      return;
    }
    const stores: Array<{ close(): Promise<void> }> = [];
    try {
      const path = join(fs, 'store.sqlite');
      const clock = new FakeClock();
      const options = { path, clock, batch: false, checkpoint: 'inline' } as const;
      const first = createSqliteStore(options);
      stores.push(first);
      expect((await first.begin('k', FP, 1_000, 1_000)).kind).toBe('acquired');
      await clock.advance(5_000); // the record has expired: the next begin takes it over
      // Fill the file system to the last byte.
      const filler = join(fs, 'filler');
      const chunk = Buffer.alloc(4096, 1);
      try {
        for (;;) writeFileSync(filler, chunk, { flag: 'a' });
      } catch {
        // Full.
      }
      const error = await thrown(() => first.begin('k', FP, 60_000, 60_000));
      expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE), String(error)).toBe(true);
      // Nothing was acquired: with space again, another connection takes the record over
      // with attempts 1 (a new operation), as the first would have.
      rmSync(filler);
      const second = createSqliteStore(options);
      stores.push(second);
      expect(await second.begin('k', FP, 60_000, 60_000)).toMatchObject({ kind: 'acquired' });
    } finally {
      for (const store of stores) await store.close().catch(() => undefined);
      // Lazily: a file still open somewhere must not leave the mount behind.
      execFileSync('umount', ['-l', fs]);
    }
  });
});

describe('sqlite store: purge in chunks', () => {
  it('purges more expired records than one chunk holds, honouring the limit', async () => {
    const clock = new FakeClock();
    const store = createSqliteStore({ path: join(dir, 'purge.sqlite'), clock });
    const ttl = (i: number) => (i % 10 === 0 ? 3_600_000 : 1000);
    for (let i = 0; i < 1300; i++) {
      const key = `k-${String(i).padStart(5, '0')}`;
      const begun = await store.begin(key, FP, 500, ttl(i));
      if (begun.kind !== 'acquired') throw new Error('expected to acquire');
      await store.complete(key, begun.token, '"r"', ttl(i));
    }
    await clock.advance(5000);
    expect(await store.purgeExpired({ limit: 700 })).toBe(700);
    expect(await store.purgeExpired()).toBe(1170 - 700);
    expect(await store.purgeExpired()).toBe(0);
    const left = await store.list({ limit: 1000 });
    expect(left.records).toHaveLength(130);
    expect(left.records.every((r) => r.expiresAt > clock.now())).toBe(true);
    await store.close();
  });
});

describe('sqlite store: corrupt records', () => {
  async function storeWithEditedRecord(edit: string) {
    const clock = new FakeClock();
    const path = join(dir, 'edited.sqlite');
    const store = createSqliteStore({ path, clock });
    const begun = await store.begin('k', FP, 1000, 60_000);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    await store.saveStep('k', begun.token, 'charge', '"ch_1"');
    const raw = new Database(path);
    raw.prepare(`UPDATE reprocess_idempotency SET ${edit} WHERE key = 'k'`).run();
    raw.close();
    return { store, clock, token: begun.token };
  }

  it('reads steps edited into invalid JSON as RecordCorruptError, and writes nothing', async () => {
    const { store, clock, token } = await storeWithEditedRecord(`steps = '{"charge": "ch_1"'`);
    for (const call of [
      () => store.get('k'),
      () => store.begin('k', FP, 1000, 60_000),
      () => store.list(),
      () => store.saveStep('k', token, 'email', '"em"'),
    ]) {
      const error = await thrown(call);
      expect(isReprocessError(error, ErrorCode.RECORD_CORRUPT)).toBe(true);
      expect(error.message).toContain('"k"');
    }
    // A takeover of the corrupt record is refused before it writes a new token.
    await clock.advance(5000);
    const error = await thrown(() => store.begin('k', FP, 1000, 60_000));
    expect(isReprocessError(error, ErrorCode.RECORD_CORRUPT)).toBe(true);
    // The record can still be fenced and removed by an operator.
    expect(await store.release('k', token)).toEqual({ kind: 'ok' });
    expect(await store.delete('k')).toBe(true);
    const fresh = await store.begin('k', FP, 1000, 60_000);
    expect(fresh.kind === 'acquired' && fresh.token > token).toBe(true);
    await store.close();
  });

  it('acquires an expired record afresh even when its steps were edited into invalid JSON', async () => {
    const { store, clock, token } = await storeWithEditedRecord(`steps = '{"charge": "ch_1"'`);
    await clock.advance(61_000); // past the TTL: a new operation, which keeps no steps
    const fresh = await store.begin('k', FP, 1000, 60_000);
    expect(fresh).toMatchObject({ kind: 'acquired', attempts: 1, steps: {}, takeover: false });
    expect(fresh.kind === 'acquired' && fresh.token > token).toBe(true);
    await store.close();
  });

  it('reads steps, token or status edited into bad values as RecordCorruptError', async () => {
    for (const edit of [
      `steps = '[1,2]'`,
      `steps = '{"a":1}'`,
      `token = 'abc'`,
      `status = 'done'`,
      `steps = 42`,
    ]) {
      const { store } = await storeWithEditedRecord(edit);
      const error = await thrown(() => store.get('k'));
      expect(isReprocessError(error, ErrorCode.RECORD_CORRUPT), edit).toBe(true);
      await store.close();
      rmSync(join(dir, 'edited.sqlite'), { force: true });
      rmSync(join(dir, 'edited.sqlite-wal'), { force: true });
      rmSync(join(dir, 'edited.sqlite-shm'), { force: true });
    }
  });
});

describe('sqlite store: lock contention', () => {
  it('turns a lock held past busy_timeout and the retries into StoreUnavailableError', async () => {
    const path = join(dir, 'busy.sqlite');
    const store = createSqliteStore({ path, busyTimeoutMs: 20, busyRetries: 1 });
    await store.createSchema();
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const error = await thrown(() => store.begin('k', FP, 1000, 60_000));
      expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
      expect(error.message).toMatch(/locked by another connection/);
      expect((error.cause as { code?: string }).code).toMatch(/^SQLITE_BUSY/);
      // Nothing was written by the refused call.
      expect(await store.get('k')).toBeUndefined();
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
  });
});

describe('sqlite store: URLs', () => {
  it('parses the accepted forms', () => {
    expect(parseSqliteUrl('sqlite::memory:')).toEqual({ path: ':memory:' });
    expect(parseSqliteUrl('sqlite:data/x.sqlite')).toEqual({ path: 'data/x.sqlite' });
    expect(parseSqliteUrl('sqlite:/var/x.sqlite')).toEqual({ path: '/var/x.sqlite' });
    expect(parseSqliteUrl('sqlite:///var/x.sqlite')).toEqual({ path: '/var/x.sqlite' });
    expect(
      parseSqliteUrl('sqlite:a%20b.sqlite?table=t1&busy_timeout_ms=250&synchronous=full'),
    ).toEqual({ path: 'a b.sqlite', table: 't1', busyTimeoutMs: 250, synchronous: 'full' });
    expect(parseSqliteUrl('sqlite:x.db?batch=false')).toEqual({ path: 'x.db', batch: false });
    expect(parseSqliteUrl('sqlite:x.db?batch=true')).toEqual({ path: 'x.db', batch: true });
  });

  it('rejects malformed URLs naming the problem', () => {
    for (const [url, message] of [
      ['postgres://x', /starts with "sqlite:"/],
      ['sqlite:', /no file path/],
      ['sqlite:x.db?colour=blue', /unknown parameter "colour"/],
      ['sqlite:x.db?busy_timeout_ms=soon', /busy_timeout_ms must be a whole number/],
      ['sqlite:x.db?synchronous=off', /synchronous must be normal or full/],
      ['sqlite:x.db?batch=yes', /batch must be true or false/],
      ['sqlite:data/100%.sqlite', /has a % that does not start an escape/],
    ] as const) {
      expect(() => parseSqliteUrl(url)).toThrow(message);
      expect(() => parseSqliteUrl(url)).toThrow(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
      );
    }
  });

  it('opens a working store from a URL', async () => {
    const store = openSqliteStore(`sqlite:${join(dir, 'url.sqlite')}?table=from_url`);
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    expect(store.path).toBe(join(dir, 'url.sqlite'));
    await store.close();
  });
});
