import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import type { IdempotencyRecord } from '../../src/idempotency/store.js';
import { createSqliteStore, parseSqliteUrl } from '../../src/stores/sqlite/index.js';
import { ReplayCache } from '../../src/stores/sqlite/replay-cache.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const FP = 'f'.repeat(64);
const OTHER_FP = 'e'.repeat(64);
const TABLE = 'reprocess_idempotency';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-cache-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Store = ReturnType<typeof createSqliteStore>;

/** Runs one operation to completion with `result`. */
async function finish(store: Store, key: string, result: string, ttlMs = 60_000): Promise<void> {
  const begun = await store.begin(key, FP, 1000, ttlMs);
  if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  expect(await store.complete(key, begun.token, result, ttlMs)).toEqual({ kind: 'ok' });
}

/** The result a replay of `key` answers (failing when the begin does not replay). */
async function replayed(store: Store, key: string, fingerprint = FP): Promise<string | undefined> {
  const begun = await store.begin(key, fingerprint, 1000, 60_000);
  if (begun.kind !== 'existing') throw new Error(`expected a replay of ${key}, got ${begun.kind}`);
  return begun.record.result;
}

/** Rewrites a stored result behind the store's back, on the given connection. */
function rewrite(db: Database.Database, key: string, result: string): void {
  const { changes } = db.prepare(`UPDATE ${TABLE} SET result = ? WHERE key = ?`).run(result, key);
  expect(changes).toBe(1);
}

describe('sqlite store: replay cache', () => {
  it('answers a replay from memory, which an edit on the same connection shows (and without the cache it does not)', async () => {
    const path = join(dir, 'same-connection.sqlite');
    const db = new Database(path);
    const cached = createSqliteStore({ database: db, replayCache: true });
    await finish(cached, 'k', '"first"');
    expect(await replayed(cached, 'k')).toBe('"first"');
    // A write on the store's own connection does not change data_version: the cache answers.
    rewrite(db, 'k', '"edited"');
    expect(await replayed(cached, 'k')).toBe('"first"');

    // A store on a connection it was given has no cache unless asked: it reads the edit.
    const plain = createSqliteStore({ database: db, table: 'plain' });
    await finish(plain, 'k', '"first"');
    expect(await replayed(plain, 'k')).toBe('"first"');
    db.prepare(`UPDATE plain SET result = '"edited"' WHERE key = 'k'`).run();
    expect(await replayed(plain, 'k')).toBe('"edited"');
    db.close();
  });

  it('sees a delete by another connection: the next begin acquires instead of replaying', async () => {
    const path = join(dir, 'other-connection.sqlite');
    const store = createSqliteStore({ path });
    await finish(store, 'k', '"first"');
    expect(await replayed(store, 'k')).toBe('"first"');
    expect(await replayed(store, 'k')).toBe('"first"');

    const other = new Database(path);
    expect(other.prepare(`DELETE FROM ${TABLE} WHERE key = ?`).run('k').changes).toBe(1);
    other.close();

    const again = await store.begin('k', OTHER_FP, 1000, 60_000);
    expect(again.kind).toBe('acquired');
    await store.close();
  });

  it('sees an edit by another connection, and by another store object on the file', async () => {
    const path = join(dir, 'edits.sqlite');
    const store = createSqliteStore({ path });
    await finish(store, 'a', '"a1"');
    await finish(store, 'b', '"b1"');
    expect(await replayed(store, 'a')).toBe('"a1"');
    expect(await replayed(store, 'b')).toBe('"b1"');

    const other = new Database(path);
    rewrite(other, 'a', '"a2"');
    other.close();
    expect(await replayed(store, 'a')).toBe('"a2"');

    const second = createSqliteStore({ path });
    expect(await second.delete('b')).toBe(true);
    await second.close();
    expect((await store.begin('b', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
  });

  it('answers replays made side by side from the cache, and sees a delete among them', async () => {
    const path = join(dir, 'side-by-side.sqlite');
    const store = createSqliteStore({ path });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (const key of keys) await finish(store, key, `"${key}"`);
    for (const key of keys) expect(await replayed(store, key)).toBe(`"${key}"`);
    expect(await Promise.all(keys.map((key) => replayed(store, key)))).toEqual(
      keys.map((key) => `"${key}"`),
    );

    // The begins are made, then another connection deletes a record before any of them is
    // answered: the first one checked at once, the others share a check made after the delete.
    const other = new Database(path);
    const pending = keys.map((key) => store.begin(key, FP, 1000, 60_000));
    other.prepare(`DELETE FROM ${TABLE} WHERE key = 'k7'`).run();
    other.close();
    const answers = await Promise.all(pending);
    expect(answers.map((a) => a.kind)).toEqual(
      keys.map((key) => (key === 'k7' ? 'acquired' : 'existing')),
    );
    await store.close();
  });

  it('sees a delete made by another OS process', async () => {
    const path = join(dir, 'process.sqlite');
    const store = createSqliteStore({ path });
    await finish(store, 'k', '"first"');
    expect(await replayed(store, 'k')).toBe('"first"');

    const script = join(dir, 'delete.cjs');
    writeFileSync(
      script,
      `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const db = new Database(process.argv[2]);
       const { changes } = db.prepare('DELETE FROM ${TABLE} WHERE key = ?').run('k');
       db.close();
       process.send(changes, () => process.exit(0));`,
    );
    const changes = await new Promise<unknown>((resolve, reject) => {
      const child = fork(script, [path], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      child.once('message', resolve);
      child.once('error', reject);
    });
    expect(changes).toBe(1);
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
  });

  it("drops a record at its expiry, and on this store's own delete and purge", async () => {
    const clock = new FakeClock();
    const path = join(dir, 'expiry.sqlite');
    const store = createSqliteStore({ path, clock });
    await finish(store, 'ttl', '"old"', 5_000);
    expect(await replayed(store, 'ttl')).toBe('"old"');
    await clock.advance(5_000);
    // Expired: a new payload starts a new operation.
    expect((await store.begin('ttl', OTHER_FP, 1000, 60_000)).kind).toBe('acquired');

    await finish(store, 'deleted', '"x"');
    expect(await replayed(store, 'deleted')).toBe('"x"');
    expect(await store.delete('deleted')).toBe(true);
    expect((await store.begin('deleted', FP, 1000, 60_000)).kind).toBe('acquired');

    await finish(store, 'purged', '"y"', 1_000);
    expect(await replayed(store, 'purged')).toBe('"y"');
    await clock.advance(1_000);
    expect(await store.purgeExpired()).toBeGreaterThanOrEqual(1);
    // The clock going back must not bring a purged record back from memory.
    clock.set(clock.now() - 1_000);
    expect((await store.begin('purged', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
  });

  it('a delete that waited for a busy lock drops what a begin cached meanwhile', async () => {
    const path = join(dir, 'busy-delete.sqlite');
    const store = createSqliteStore({ path, busyTimeoutMs: 0, busyRetries: 10 });
    await finish(store, 'k', '"first"');
    await finish(store, 'other', '"o"');
    expect(await replayed(store, 'k')).toBe('"first"');
    expect(await replayed(store, 'other')).toBe('"o"');

    const raw = new Database(path);
    raw.exec('CREATE TABLE IF NOT EXISTS elsewhere (x)');
    raw.exec('BEGIN IMMEDIATE');
    // The delete meets the lock and waits to retry.
    const deleting = store.delete('k');
    // Another connection commits (data_version changes) and takes the lock again.
    raw.exec('INSERT INTO elsewhere VALUES (1)');
    raw.exec('COMMIT');
    raw.exec('BEGIN IMMEDIATE');
    // A hit sees the change and empties the cache; then `k`, not deleted yet, is read and
    // cached again.
    expect(await replayed(store, 'other')).toBe('"o"');
    expect(await replayed(store, 'k')).toBe('"first"');
    raw.exec('COMMIT');
    raw.close();
    expect(await deleting).toBe(true);
    // This connection's own delete does not change data_version: the entry must be gone.
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close();
  });

  it('caches failed records too, and never records still in progress', async () => {
    const path = join(dir, 'statuses.sqlite');
    const db = new Database(path);
    const store = createSqliteStore({ database: db, replayCache: true });
    const begun = await store.begin('failed', FP, 1000, 60_000);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    await store.fail('failed', begun.token, '{"name":"Error"}', 60_000);
    const first = await store.begin('failed', FP, 1000, 60_000);
    expect(first.kind === 'existing' && first.record.status).toBe('failed');
    db.prepare(`UPDATE ${TABLE} SET error = '{"name":"Edited"}' WHERE key = 'failed'`).run();
    const second = await store.begin('failed', FP, 1000, 60_000);
    expect(second.kind === 'existing' && second.record.error).toBe('{"name":"Error"}');

    const live = await store.begin('live', FP, 60_000, 60_000);
    expect(live.kind).toBe('acquired');
    expect((await store.begin('live', FP, 1000, 60_000)).kind).toBe('existing');
    db.prepare(`UPDATE ${TABLE} SET lease_until = 0 WHERE key = 'live'`).run();
    // Not cached: the ended lease is read, and the same payload takes the operation over.
    const takeover = await store.begin('live', FP, 1000, 60_000);
    expect(takeover.kind === 'acquired' && takeover.takeover).toBe(true);
    db.close();
  });

  it('serves a frozen record, so that no caller can change what the next replay sees', async () => {
    const store = createSqliteStore({ path: join(dir, 'frozen.sqlite') });
    await finish(store, 'k', '"first"');
    const a = await store.begin('k', FP, 1000, 60_000);
    const b = await store.begin('k', FP, 1000, 60_000);
    if (a.kind !== 'existing' || b.kind !== 'existing') throw new Error('expected replays');
    expect(b.record).toBe(a.record);
    expect(Object.isFrozen(b.record)).toBe(true);
    expect(() => {
      (b.record as { result?: string }).result = 'changed';
    }).toThrow(TypeError);
    await store.close();
  });

  it('keeps within maxBytes: big results are not cached, the oldest entries leave first', async () => {
    const path = join(dir, 'bounded.sqlite');
    const db = new Database(path);
    // A small entry counts 256 + 2 x (1 + 64 + 7) = 400 bytes: eight fit in 3,200, a ninth
    // evicts the oldest. One entry may take an eighth (400): the big one (790) is not kept.
    const store = createSqliteStore({ database: db, replayCache: { maxBytes: 3_200 } });
    const big = `"${'x'.repeat(200)}"`;
    await finish(store, 'B', big);
    expect(await replayed(store, 'B')).toBe(big);
    rewrite(db, 'B', '"edited"');
    expect(await replayed(store, 'B')).toBe('"edited"');

    const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9'];
    for (const key of keys) {
      await finish(store, key, `"v${key}   "`);
      expect(await replayed(store, key)).toBe(`"v${key}   "`);
    }
    for (const key of keys) rewrite(db, key, `"e${key}   "`);
    // '1' was evicted by '9': the others still answer from memory, '1' is read again.
    for (const key of keys.slice(1)) expect(await replayed(store, key)).toBe(`"v${key}   "`);
    expect(await replayed(store, '1')).toBe('"e1   "');
    db.close();
  });

  it('rejects a bad replayCache option or URL parameter with a typed error naming it', () => {
    for (const bad of ['yes', 1, null, { maxBytes: -1 }, { maxBytes: 1.5 }, { maxBytes: 'big' }]) {
      let caught: unknown;
      try {
        createSqliteStore({ path: join(dir, 'bad.sqlite'), replayCache: bad as never });
      } catch (error) {
        caught = error;
      }
      expect(isReprocessError(caught) && caught.code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect((caught as Error).message).toMatch(/replayCache/);
    }
    expect(parseSqliteUrl('sqlite:a.sqlite?replay_cache_bytes=0').replayCache).toEqual({
      maxBytes: 0,
    });
    expect(() => parseSqliteUrl('sqlite:a.sqlite?replay_cache_bytes=lots')).toThrow(
      /replay_cache_bytes must be a whole number/,
    );
  });
});

describe('ReplayCache', () => {
  function record(key: string, expiresAt = 10_000): IdempotencyRecord {
    return {
      key,
      fingerprint: FP,
      status: 'completed',
      token: 1,
      attempts: 1,
      leaseUntil: 0,
      expiresAt,
      steps: {},
      createdAt: 0,
      updatedAt: 0,
      result: '"r"',
    };
  }

  it('adds nothing before the data version is first observed', async () => {
    let version = 1;
    const cache = new ReplayCache(1_000_000, () => version);
    cache.add(record('a'));
    expect(cache.size).toBe(0);
    cache.start();
    cache.add(record('a'));
    expect((await cache.get('a', 0))?.key).toBe('a');
    version = 2;
    expect(await cache.get('a', 0)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('treats a failing version check as a change', async () => {
    let fail = false;
    const cache = new ReplayCache(1_000_000, () => {
      if (fail) throw new Error('SQLITE_BUSY');
      return 7;
    });
    cache.start();
    cache.add(record('a'));
    fail = true;
    expect(await cache.get('a', 0)).toBeUndefined();
    fail = false;
    // The next observation starts afresh.
    cache.add(record('a'));
    expect(await cache.get('a', 0)).toBeUndefined();
    cache.add(record('a'));
    expect((await cache.get('a', 0))?.key).toBe('a');
  });

  it('mostly stops caching while other writers change the version at every check', async () => {
    let version = 0;
    const cache = new ReplayCache(1_000_000, () => version);
    cache.start();
    let added = 0;
    for (let i = 0; i < 640; i++) {
      cache.add(record(`k${i}`));
      if (cache.size > 0) added++;
      version++;
      await cache.get(`k${i}`, 0);
    }
    // The first checks all failed; after them only one add in 32 goes in.
    expect(added).toBeLessThan(60);
    expect(added).toBeGreaterThan(10);
    // When the writers go quiet, the probes find the version unchanged, and after a few of
    // them (one add in 32 each) caching resumes.
    let hits = 0;
    for (let i = 0; i < 640; i++) {
      cache.add(record(`q${i}`));
      if ((await cache.get(`q${i}`, 0)) !== undefined) hits++;
    }
    expect(hits).toBeGreaterThan(400);
  });

  it('gives the hits of one stretch of microtasks one shared check, made after all of them', async () => {
    let version = 1;
    let checks = 0;
    const cache = new ReplayCache(1_000_000, () => {
      checks++;
      return version;
    });
    cache.start();
    for (const key of ['a', 'b', 'c', 'd']) cache.add(record(key));
    checks = 0;
    // The first hit checks at once; the next three wait for one check.
    const first = cache.get('a', 0);
    const rest = ['b', 'c', 'd'].map((key) => cache.get(key, 0));
    expect(first).toMatchObject({ key: 'a' });
    for (const waiting of rest) expect(waiting).toBeInstanceOf(Promise);
    // This store deletes 'c' before the shared check: that one is read again.
    cache.delete('c');
    expect((await Promise.all(rest)).map((r) => r?.key)).toEqual(['b', undefined, 'd']);
    expect(checks).toBe(2);

    // A write elsewhere before the shared check: none of the waiting hits is served.
    await Promise.resolve();
    cache.add(record('e'));
    cache.add(record('f'));
    expect(cache.get('e', 0)).toMatchObject({ key: 'e' });
    const waiting = cache.get('f', 0);
    version = 2;
    expect(await waiting).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
