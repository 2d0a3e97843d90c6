import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';
import { WalHeaderWatch } from '../../src/stores/sqlite/wal-header-watch.js';

const require = createRequire(import.meta.url);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-wal-watch-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A fake -shm file: two 48-byte header copies, `isInit` set, `change` in the counter. */
function header(change: number, second = change): Buffer {
  const bytes = Buffer.alloc(96);
  for (const [at, value] of [
    [0, change],
    [48, second],
  ] as const) {
    bytes.writeUInt32LE(3007000, at);
    bytes.writeUInt32LE(value, at + 8);
    bytes[at + 12] = 1;
  }
  return bytes;
}

/** A data_version stand-in that counts how often it is asked. */
function pragma(): { asked: number; value: number; read: () => number } {
  const p = {
    asked: 0,
    value: 7,
    read: () => {
      p.asked += 1;
      return p.value;
    },
  };
  return p;
}

describe('WalHeaderWatch on a header file', () => {
  it('asks data_version only when the header changed since it last asked', () => {
    const shm = join(dir, 'a-shm');
    writeFileSync(shm, header(1));
    const version = pragma();
    const watch = new WalHeaderWatch(shm, version.read);
    expect(watch.version()).toBe(7);
    expect(watch.version()).toBe(7);
    expect(watch.version()).toBe(7);
    expect(version.asked).toBe(1);

    writeFileSync(shm, header(2));
    version.value = 8;
    expect(watch.version()).toBe(8);
    expect(version.asked).toBe(2);
    expect(watch.version()).toBe(8);
    expect(version.asked).toBe(2);
    watch.close();
  });

  it('asks every time while the two copies differ, or the header is not built', () => {
    const shm = join(dir, 'b-shm');
    writeFileSync(shm, header(5, 6));
    const version = pragma();
    const watch = new WalHeaderWatch(shm, version.read);
    watch.version();
    watch.version();
    expect(version.asked).toBe(2);

    const unbuilt = header(5);
    unbuilt[12] = 0;
    unbuilt[60] = 0;
    writeFileSync(shm, unbuilt);
    watch.version();
    watch.version();
    expect(version.asked).toBe(4);
    watch.close();
  });

  it('falls back to data_version for good when the file cannot be read', () => {
    const version = pragma();
    const watch = new WalHeaderWatch(join(dir, 'missing-shm'), version.read);
    expect(watch.version()).toBe(7);
    writeFileSync(join(dir, 'missing-shm'), header(1));
    watch.version();
    watch.version();
    expect(version.asked).toBe(3);
  });

  it('keeps no version for a header whose data_version failed', () => {
    const shm = join(dir, 'throws-shm');
    writeFileSync(shm, header(1));
    let fail = true;
    let asked = 0;
    const watch = new WalHeaderWatch(shm, () => {
      asked += 1;
      if (fail) throw new Error('SQLITE_IOERR');
      return 9;
    });
    expect(() => watch.version()).toThrow('SQLITE_IOERR');
    fail = false;
    expect(watch.version()).toBe(9);
    expect(asked).toBe(2);
    watch.close();
  });

  it('a short file is unusable, not an error', () => {
    const shm = join(dir, 'short-shm');
    writeFileSync(shm, header(1).subarray(0, 50));
    const version = pragma();
    const watch = new WalHeaderWatch(shm, version.read);
    watch.version();
    watch.version();
    expect(version.asked).toBe(2);
    watch.close();
  });

  it('stops reading a header that keeps changing, and reads it again once it holds still', () => {
    const shm = join(dir, 'busy-shm');
    const version = pragma();
    const watch = new WalHeaderWatch(shm, version.read);
    for (let i = 0; i < 40; i++) {
      writeFileSync(shm, header(i));
      watch.version();
    }
    expect(version.asked).toBe(40);
    // Holding still: while the watch skips the header it still asks every time (never a
    // stale answer); a read every few checks finds it still and it stops asking.
    const asks: number[] = [];
    for (let i = 0; i < 60; i++) {
      const before = version.asked;
      watch.version();
      asks.push(version.asked - before);
    }
    // Reading the header at once would have asked at most once in all 60.
    expect(asks.reduce((sum, n) => sum + n, 0)).toBeGreaterThanOrEqual(8);
    expect(asks.slice(-10)).toEqual(new Array(10).fill(0));
    watch.close();
  });
});

describe('WalHeaderWatch on a WAL database', () => {
  it("gives what data_version gives: another connection's commit changes it, its own does not", () => {
    const path = join(dir, 'db.sqlite');
    const mine = new Database(path);
    mine.pragma('journal_mode = WAL');
    mine.exec('CREATE TABLE t (k INTEGER PRIMARY KEY)');
    const other = new Database(path);
    const dataVersion = mine.prepare('PRAGMA data_version').pluck();
    let asked = 0;
    const watch = new WalHeaderWatch(`${path}-shm`, () => {
      asked += 1;
      return dataVersion.get() as number;
    });

    const first = watch.version();
    expect(watch.version()).toBe(first);
    expect(asked).toBe(1);

    other.prepare('INSERT INTO t (k) VALUES (1)').run();
    const afterOther = watch.version();
    expect(afterOther).not.toBe(first);
    expect(afterOther).toBe(dataVersion.get());

    mine.prepare('INSERT INTO t (k) VALUES (2)').run();
    expect(watch.version()).toBe(afterOther);
    // A checkpoint is no commit: nothing to ask.
    const before = asked;
    other.pragma('wal_checkpoint(PASSIVE)');
    expect(watch.version()).toBe(afterOther);
    expect(asked).toBe(before);

    for (let i = 3; i < 50; i++) {
      const writer = i % 2 === 0 ? other : mine;
      writer.prepare('INSERT INTO t (k) VALUES (?)').run(i);
      expect(watch.version()).toBe(dataVersion.get());
    }
    watch.close();
    other.close();
    mine.close();
  });
});

describe('SQLite store reading the WAL-index header', () => {
  const TABLE = 'reprocess_idempotency';
  const FP = 'f'.repeat(64);

  async function finishAndReplay(store: ReturnType<typeof createSqliteStore>, key: string) {
    const begun = await store.begin(key, FP, 1000, 60_000);
    if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
    await store.complete(key, begun.token, '"done"', 60_000);
    // Two replays: the first caches the record, the second is served through the header.
    for (let i = 0; i < 2; i++)
      expect((await store.begin(key, FP, 1000, 60_000)).kind).toBe('existing');
  }

  /** Runs `source` (CommonJS, better-sqlite3 as `Database`, the file as `path`) in a child. */
  function inChild(path: string, source: string): Promise<unknown> {
    const script = join(dir, `child-${Math.random().toString(36).slice(2)}.cjs`);
    writeFileSync(
      script,
      `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const path = process.argv[2];
       ${source}`,
    );
    return new Promise((resolve, reject) => {
      const child = fork(script, [path], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      child.once('message', resolve);
      child.once('error', reject);
      child.once('exit', (code) => {
        if (code !== 0) reject(new Error(`child exited with ${code}`));
      });
    });
  }

  it('closing the store keeps the locks other connections of the process hold on the -shm file', async () => {
    const path = join(dir, 'locks.sqlite');
    const store = createSqliteStore({ path });
    await finishAndReplay(store, 'k');
    // Another connection of this process, in the middle of a read.
    const reader = new Database(path);
    const rows = reader.prepare(`SELECT key FROM ${TABLE}`).iterate();
    expect(rows.next().done).toBe(false);
    await store.close();

    // Another process writes, then tries a checkpoint that must wait for every reader: the
    // read above still holds its lock, so it reports busy.
    const busy = await inChild(
      path,
      // No busy timeout: the checkpoint reports busy at once instead of waiting 5 s for the reader.
      `const db = new Database(path, { timeout: 0 });
       db.prepare('INSERT INTO ${TABLE} (key, fingerprint, status, token, attempts, lease_until, expires_at, created_at, updated_at) VALUES (?, ?, ?, 1, 1, 0, 0, 0, 0)').run('other', 'fp', 'completed');
       const [result] = db.pragma('wal_checkpoint(TRUNCATE)');
       db.close();
       process.send(result.busy, () => process.exit(0));`,
    );
    expect(busy).toBe(1);
    rows.return?.();
    reader.close();
  });

  it('reads the header beside the file a symbolic link points to', async () => {
    mkdirSync(join(dir, 'real'));
    const real = join(dir, 'real', 'store.sqlite');
    const link = join(dir, 'link.sqlite');
    const store = createSqliteStore({ path: real });
    await store.createSchema();
    await store.close();
    symlinkSync(real, link);
    // A stale -shm beside the link (left by a crash, say): a header that never changes.
    writeFileSync(`${link}-shm`, header(1));

    const viaLink = createSqliteStore({ path: link });
    await finishAndReplay(viaLink, 'k');
    const other = new Database(real);
    expect(other.prepare(`DELETE FROM ${TABLE} WHERE key = ?`).run('k').changes).toBe(1);
    other.close();
    expect((await viaLink.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await viaLink.close();
  });
});
