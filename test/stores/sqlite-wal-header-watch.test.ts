import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WalHeaderWatch } from '../../src/stores/sqlite/wal-header-watch.js';

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
    expect(asks.slice(0, 10)).toContain(1);
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
