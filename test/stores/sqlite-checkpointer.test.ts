import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { expectOneClosing } from '../helpers/closing.js';
import { codeOf, errorOf } from '../helpers/errors.js';
import { runTsx } from '../helpers/run-tsx.js';
import {
  BackgroundCheckpointer,
  CHECKPOINT_WARNING,
  type CheckpointLimits,
  setCheckpointDriverForTests,
} from '../../src/stores/sqlite/checkpointer.js';
import { createSqliteStore, parseSqliteUrl } from '../../src/stores/sqlite/index.js';

const CHILD = fileURLToPath(new URL('./fixtures/sqlite-checkpoint-child.ts', import.meta.url));
const LIMITS: CheckpointLimits = {
  startAfterWrites: 50,
  signalWrites: 20,
  idleMs: 50,
  fallbackPages: 10_000,
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

/** The worker of the process's checkpoint thread, as a checkpointer sees it (if it is served). */
interface ThreadView {
  worker: { terminate(): Promise<number>; once(event: 'exit', listener: () => void): unknown };
  port: { postMessage(message: unknown): void };
}
const threadOf = (checkpointer: BackgroundCheckpointer) =>
  (checkpointer as unknown as { thread?: ThreadView }).thread;

/** The checkpoint warnings the process emits while `body` runs (and a tick after). */
async function checkpointWarnings(body: () => Promise<void>): Promise<Error[]> {
  const warnings: Error[] = [];
  const listener = (warning: Error) => {
    if ((warning as { code?: string }).code === CHECKPOINT_WARNING) warnings.push(warning);
  };
  process.on('warning', listener);
  try {
    await body();
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return warnings;
}

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
    const thread = threadOf(checkpointer);
    const exited = new Promise((resolve) => thread?.worker.once('exit', () => resolve(true)));
    await checkpointer.close();
    expect(checkpointer.phase).toBe('off');
    // close() returned once the thread had let go of this store; the last store out stops it.
    expect(threadOf(checkpointer)).toBeUndefined();
    expect(await exited).toBe(true);
    db.close();
  });

  it('answers a second close() only once the thread has let go of the file', async () => {
    const { db, checkpointer } = await running('twice.sqlite');
    const first = checkpointer.close();
    const second = checkpointer.close();
    await second;
    expect(threadOf(checkpointer)).toBeUndefined();
    await first;
    // A third, once closed, also finds nothing left to wait for.
    await checkpointer.close();
    expect(checkpointer.phase).toBe('off');
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

  it('gives checkpoints back to every connection it served when its thread dies', async () => {
    const a = await running('dies-a.sqlite');
    const b = await running('dies-b.sqlite');
    const thread = threadOf(a.checkpointer);
    expect(threadOf(b.checkpointer)).toBe(thread);
    await thread?.worker.terminate();
    for (const { db, checkpointer } of [a, b]) {
      await vi.waitFor(() => expect(checkpointer.phase).toBe('off'), WAIT);
      expect(autocheckpoint(db)).toBe(1000);
      // Counting goes on harmlessly, and this store joins no new thread.
      write(db, checkpointer, 200);
      expect(checkpointer.phase).toBe('off');
      expect(threadOf(checkpointer)).toBeUndefined();
      await checkpointer.close();
      db.close();
    }
    // A store that reaches its write count later starts a new thread.
    const c = await running('dies-c.sqlite');
    expect(threadOf(c.checkpointer)).not.toBe(thread);
    await c.checkpointer.close();
    c.db.close();
  });

  it('serves every store of the process from one thread, which stops when the last one leaves', async () => {
    const stores = [await running('one.sqlite'), await running('two.sqlite')];
    const [first, second] = stores as [(typeof stores)[0], (typeof stores)[0]];
    const thread = threadOf(first.checkpointer);
    expect(thread).toBeDefined();
    expect(threadOf(second.checkpointer)).toBe(thread);
    // Each file is checkpointed: both grow, though their connections no longer checkpoint.
    const sizes = stores.map(({ path }) => statSync(path).size);
    for (const { db, checkpointer } of stores) write(db, checkpointer, 2000);
    await vi.waitFor(() => {
      for (const [i, { path }] of stores.entries()) {
        expect(statSync(path).size).toBeGreaterThan((sizes[i] as number) + 200_000);
      }
    }, WAIT);

    const exited = new Promise((resolve) => thread?.worker.once('exit', () => resolve(true)));
    await first.checkpointer.close();
    // The other store is still served, by the same thread.
    expect(second.checkpointer.phase).toBe('running');
    expect(threadOf(second.checkpointer)).toBe(thread);
    const made = second.checkpointer.checkpoints;
    write(second.db, second.checkpointer, LIMITS.signalWrites);
    await vi.waitFor(() => expect(second.checkpointer.checkpoints).toBeGreaterThan(made), WAIT);

    await second.checkpointer.close();
    expect(await exited).toBe(true);
    for (const { db } of stores) db.close();
  });

  it('warns once and starts no thread again in the process when the thread cannot load its driver', async () => {
    const missing = join(dir, 'no-such-driver.js');
    const warnings = await checkpointWarnings(async () => {
      setCheckpointDriverForTests(missing);
      try {
        const a = openDb('no-driver-a.sqlite');
        const first = new BackgroundCheckpointer(a.db, a.path, LIMITS);
        write(a.db, first, LIMITS.startAfterWrites);
        expect(first.phase).toBe('starting');
        await vi.waitFor(() => expect(first.phase).toBe('off'), WAIT);
        expect(autocheckpoint(a.db)).toBe(1000);
        // A second store stays inline at once: no thread is started for it.
        const b = openDb('no-driver-b.sqlite');
        const second = new BackgroundCheckpointer(b.db, b.path, LIMITS);
        write(b.db, second, LIMITS.startAfterWrites);
        expect(second.phase).toBe('off');
        expect(threadOf(second)).toBeUndefined();
        expect(autocheckpoint(b.db)).toBe(1000);
        for (const [{ db }, checkpointer] of [
          [a, first],
          [b, second],
        ] as const) {
          await checkpointer.close();
          db.close();
        }
      } finally {
        setCheckpointDriverForTests(undefined);
      }
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.name).toBe('ReprocessWarning');
    expect(warnings[0]?.message).toContain('checkpoint thread could not start');
    expect(warnings[0]?.message).toContain(missing);
    // With the driver back, a store gets its thread again.
    const c = await running('driver-back.sqlite');
    await c.checkpointer.close();
    c.db.close();
  });

  it('warns once when a running thread fails, and its stores go back inline', async () => {
    setCheckpointDriverForTests(undefined);
    const warnings = await checkpointWarnings(async () => {
      const a = await running('fails-a.sqlite');
      const b = await running('fails-b.sqlite');
      // A message the thread cannot read throws in it: an error nobody catches there.
      threadOf(a.checkpointer)?.port.postMessage(null);
      for (const { db, checkpointer } of [a, b]) {
        await vi.waitFor(() => expect(checkpointer.phase).toBe('off'), WAIT);
        expect(autocheckpoint(db)).toBe(1000);
        await checkpointer.close();
        db.close();
      }
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toContain('checkpoint thread failed');
  });

  it('stays inline when the thread cannot open its file; the thread serves the others on', async () => {
    const other = await running('fine.sqlite');
    const { db } = openDb('missing.sqlite');
    const checkpointer = new BackgroundCheckpointer(db, join(dir, 'nowhere', 'x.sqlite'), LIMITS);
    write(db, checkpointer, LIMITS.startAfterWrites);
    expect(checkpointer.phase).toBe('starting');
    // The thread gives up on this store on its own, before any close().
    await vi.waitFor(() => expect(checkpointer.phase).toBe('off'), WAIT);
    expect(autocheckpoint(db)).toBe(1000);
    write(db, checkpointer, 200);
    expect(checkpointer.phase).toBe('off');
    await checkpointer.close();
    db.close();
    // The store it could serve is still served.
    expect(other.checkpointer.phase).toBe('running');
    const made = other.checkpointer.checkpoints;
    write(other.db, other.checkpointer, LIMITS.signalWrites);
    await vi.waitFor(() => expect(other.checkpointer.checkpoints).toBeGreaterThan(made), WAIT);
    await other.checkpointer.close();
    other.db.close();
  });
});

describe('SQLite store checkpoints', () => {
  type Store = ReturnType<typeof createSqliteStore>;
  const checkpointerOf = (store: Store) =>
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
    expect(checkpointerOf(store)?.phase).toBe('counting');
    await operations(store, 1200, 499);
    await vi.waitFor(() => expect(checkpointerOf(store)?.phase).toBe('running'), WAIT);
    await store.close();
    // The thread's connection closed first, so the store's, the last, removed the WAL.
    expect(existsSync(`${path}-wal`)).toBe(false);
    const reopened = createSqliteStore({ path });
    const page = await reopened.list({ limit: 1000, status: 'completed' });
    expect(page.records).toHaveLength(1000);
    expect(await reopened.get('op-1698')).toMatchObject({ status: 'completed', result: '1698' });
    await reopened.close();
  });

  it('closes once however often close() is called: every call returns that one closing', async () => {
    const path = join(dir, 'twice.sqlite');
    const store = createSqliteStore({ path });
    await operations(store, 1100);
    await vi.waitFor(() => expect(checkpointerOf(store)?.phase).toBe('running'), WAIT);
    await expectOneClosing(() => store.close());
    expect(existsSync(`${path}-wal`)).toBe(false);
    await expect(store.get('op-1')).rejects.toThrow(/the store is closed/);
  });

  it("checkpoint: 'inline', a connection passed in and :memory: start no thread", async () => {
    const inline = createSqliteStore({ path: join(dir, 'inline.sqlite'), checkpoint: 'inline' });
    await operations(inline, 600);
    expect(checkpointerOf(inline)).toBeUndefined();
    await inline.close();

    const db = new Database(join(dir, 'theirs.sqlite'));
    const theirs = createSqliteStore({ database: db });
    expect(checkpointerOf(theirs)).toBeUndefined();
    await theirs.close();
    db.close();

    const memory = createSqliteStore({ path: ':memory:' });
    expect(checkpointerOf(memory)).toBeUndefined();
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
