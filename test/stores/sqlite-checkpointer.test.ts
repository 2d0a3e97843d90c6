import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { codeOf, errorOf } from '../helpers/errors.js';
import { runTsx } from '../helpers/run-tsx.js';
import {
  BackgroundCheckpointer,
  type CheckpointLimits,
} from '../../src/stores/sqlite/checkpointer.js';
import { createSqliteStore, parseSqliteUrl } from '../../src/stores/sqlite/index.js';

const CHILD = fileURLToPath(new URL('./fixtures/sqlite-checkpoint-child.ts', import.meta.url));
const LIMITS: CheckpointLimits = {
  startAfterWrites: 50,
  signalWrites: 20,
  idleMs: 50,
  fallbackPages: 10_000,
  maxThreads: 2,
};
/** How long a thread may take to start or to make a checkpoint (it runs in real time). */
const WAIT = { timeout: 10_000, interval: 10 };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-checkpoint-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A WAL database with one table, as the store opens its file. */
function openDb(name: string): { db: Database.Database; path: string } {
  const path = join(dir, name);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)');
  return { db, path };
}

/** `count` write transactions of one row each, counted on `checkpointer`. */
function write(db: Database.Database, checkpointer: BackgroundCheckpointer, count: number): void {
  const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  for (let i = 0; i < count; i++) {
    insert.run(`${Math.random()}`, 'x'.repeat(200));
    checkpointer.wrote(1);
  }
}

/** A database whose checkpointer has started its thread (after startAfterWrites writes). */
async function running(name: string) {
  const { db, path } = openDb(name);
  const checkpointer = new BackgroundCheckpointer(db, path, LIMITS);
  write(db, checkpointer, LIMITS.startAfterWrites);
  await vi.waitFor(() => expect(checkpointer.phase).toBe('running'), WAIT);
  return { db, path, checkpointer };
}

const autocheckpoint = (db: Database.Database) =>
  db.pragma('wal_autocheckpoint', { simple: true }) as number;

describe('BackgroundCheckpointer', () => {
  it('starts its thread only after startAfterWrites writes, then raises the inline bound', async () => {
    const { db, path } = openDb('start.sqlite');
    const checkpointer = new BackgroundCheckpointer(db, path, LIMITS);
    write(db, checkpointer, 49);
    expect(checkpointer.phase).toBe('counting');
    expect(autocheckpoint(db)).toBe(1000);
    write(db, checkpointer, 1);
    expect(checkpointer.phase).not.toBe('counting');
    await vi.waitFor(() => expect(checkpointer.phase).toBe('running'), WAIT);
    expect(autocheckpoint(db)).toBe(10_000);
    await checkpointer.close();
    expect(checkpointer.phase).toBe('off');
    // close() returned after the thread exited.
    expect((checkpointer as unknown as { worker?: unknown }).worker).toBeUndefined();
    db.close();
  });

  it('copies the WAL into the database file while the connection no longer does', async () => {
    const { db, path, checkpointer } = await running('copy.sqlite');
    const before = statSync(path).size;
    // Well below the connection's raised bound of 10,000 pages: only the thread checkpoints.
    write(db, checkpointer, 2000);
    await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(before + 200_000), WAIT);
    expect(checkpointer.checkpoints).toBeGreaterThan(0);
    await checkpointer.close();
    db.close();
  });

  it('checkpoints a few writes after idleMs, without waiting for signalWrites', async () => {
    const { db, checkpointer } = await running('idle.sqlite');
    const made = checkpointer.checkpoints;
    write(db, checkpointer, 1);
    await vi.waitFor(() => expect(checkpointer.checkpoints).toBeGreaterThan(made), WAIT);
    await checkpointer.close();
    db.close();
  });

  it('gives checkpoints back to the connection when its thread dies', async () => {
    const { db, checkpointer } = await running('dies.sqlite');
    const thread = (checkpointer as unknown as { worker: { terminate(): Promise<number> } }).worker;
    await thread.terminate();
    await vi.waitFor(() => expect(checkpointer.phase).toBe('off'), WAIT);
    expect(autocheckpoint(db)).toBe(1000);
    // Counting goes on harmlessly, and no second thread starts.
    write(db, checkpointer, 200);
    expect(checkpointer.phase).toBe('off');
    expect((checkpointer as unknown as { worker?: unknown }).worker).toBeUndefined();
    await checkpointer.close();
    db.close();
  });

  it('runs at most maxThreads threads in a process; a store turned away tries again later', async () => {
    const one = { ...LIMITS, maxThreads: 1 };
    const a = openDb('first.sqlite');
    const first = new BackgroundCheckpointer(a.db, a.path, one);
    write(a.db, first, one.startAfterWrites);
    await vi.waitFor(() => expect(first.phase).toBe('running'), WAIT);

    const b = openDb('second.sqlite');
    const second = new BackgroundCheckpointer(b.db, b.path, one);
    write(b.db, second, one.startAfterWrites);
    expect(second.phase).toBe('counting');
    expect(autocheckpoint(b.db)).toBe(1000);

    await first.close();
    // Its next round of writes finds the thread free.
    write(b.db, second, one.startAfterWrites - 1);
    expect(second.phase).toBe('counting');
    write(b.db, second, 1);
    await vi.waitFor(() => expect(second.phase).toBe('running'), WAIT);
    await second.close();
    a.db.close();
    b.db.close();
  });

  it('stays inline when its thread cannot open the file', async () => {
    const { db } = openDb('missing.sqlite');
    const checkpointer = new BackgroundCheckpointer(db, join(dir, 'nowhere', 'x.sqlite'), LIMITS);
    write(db, checkpointer, LIMITS.startAfterWrites);
    expect(checkpointer.phase).toBe('starting');
    // The thread fails on its own, before any close().
    await vi.waitFor(() => expect(checkpointer.phase).toBe('off'), WAIT);
    expect(autocheckpoint(db)).toBe(1000);
    write(db, checkpointer, 200);
    expect(checkpointer.phase).toBe('off');
    await checkpointer.close();
    db.close();
  });
});

describe('SQLite store checkpoints', () => {
  type Store = ReturnType<typeof createSqliteStore>;
  const threadOf = (store: Store) =>
    (store as unknown as { checkpointer?: BackgroundCheckpointer }).checkpointer;

  async function operations(store: Store, count: number, from = 0): Promise<void> {
    for (let i = from; i < from + count; i++) {
      const begun = await store.begin(`op-${i}`, 'fp', 60_000, 3_600_000);
      if (begun.kind !== 'acquired') throw new Error(`op-${i} was not acquired`);
      expect(await store.complete(`op-${i}`, begun.token, `${i}`, 3_600_000)).toEqual({
        kind: 'ok',
      });
    }
  }

  it('moves checkpoints to a thread after 1,000 writes, keeps every record, and cleans up on close', async () => {
    const path = join(dir, 'store.sqlite');
    const store = createSqliteStore({ path });
    await operations(store, 499);
    expect(threadOf(store)?.phase).toBe('counting');
    await operations(store, 1200, 499);
    await vi.waitFor(() => expect(threadOf(store)?.phase).toBe('running'), WAIT);
    await store.close();
    // The thread's connection closed first, so the store's, the last, removed the WAL.
    expect(existsSync(`${path}-wal`)).toBe(false);
    const reopened = createSqliteStore({ path });
    const page = await reopened.list({ limit: 1000, status: 'completed' });
    expect(page.records).toHaveLength(1000);
    expect(await reopened.get('op-1698')).toMatchObject({ status: 'completed', result: '1698' });
    await reopened.close();
  });

  it("checkpoint: 'inline', a connection passed in and :memory: start no thread", async () => {
    const inline = createSqliteStore({ path: join(dir, 'inline.sqlite'), checkpoint: 'inline' });
    await operations(inline, 600);
    expect(threadOf(inline)).toBeUndefined();
    await inline.close();

    const db = new Database(join(dir, 'theirs.sqlite'));
    const theirs = createSqliteStore({ database: db });
    expect(threadOf(theirs)).toBeUndefined();
    await theirs.close();
    db.close();

    const memory = createSqliteStore({ path: ':memory:' });
    expect(threadOf(memory)).toBeUndefined();
    await memory.close();
  });

  it('rejects an unknown checkpoint mode, in options and in a URL', async () => {
    const error = await errorOf(() =>
      createSqliteStore({
        path: join(dir, 'bad.sqlite'),
        checkpoint: 'sometimes' as unknown as 'inline',
      }),
    );
    expect(codeOf(error)).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((error as Error).message).toMatch(
      /checkpoint must be 'background' or 'inline'; got "sometimes"/,
    );
    expect(parseSqliteUrl('sqlite:x.sqlite?checkpoint=inline').checkpoint).toBe('inline');
    expect(() => parseSqliteUrl('sqlite:x.sqlite?checkpoint=later')).toThrow(
      /checkpoint must be background or inline; got "later"/,
    );
  });

  const runChild = (path: string, mode: 'close' | 'leave') => runTsx([CHILD, path, mode]);

  it('neither keeps a process alive nor ends it while close() waits for the thread', async () => {
    const [closed, left] = await Promise.all([
      runChild(join(dir, 'child-close.sqlite'), 'close'),
      runChild(join(dir, 'child-leave.sqlite'), 'leave'),
    ]);
    expect(closed).toMatchObject({ code: 0, stdout: 'thread true\nclosed\n' });
    expect(left).toMatchObject({ code: 0, stdout: 'thread true\n' });
  }, 30_000);
});
