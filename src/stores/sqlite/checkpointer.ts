import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * WAL checkpoints on a thread of their own.
 *
 * In WAL mode a commit appends pages to the -wal file, and once it holds 1,000 pages SQLite
 * copies them back into the database file (a checkpoint) inside the commit that crossed the
 * line, fsyncing both files. The event loop waits for all of it. With hashed keys every
 * insert lands on a random page of the key index, so checkpoints come often: measured on
 * this machine with batches of 32 operations, the event loop was blocked 30-36 µs per
 * operation with inline checkpoints and 17-18 µs with this thread doing them.
 *
 * The thread opens its own connection to the file and runs `PRAGMA wal_checkpoint(PASSIVE)`,
 * which never blocks writers or readers (it copies what no reader still needs and leaves the
 * rest for the next round). The store counts its writes in shared memory; the thread sleeps
 * until {@link SIGNAL_WRITES} writes piled up, or {@link IDLE_MS} passed with any, then
 * checkpoints. A checkpoint changes no row and is no commit, so it does not change what any
 * connection reads, nor `PRAGMA data_version`.
 *
 * The WAL file starts over from its beginning only when a write begins after every frame was
 * copied back. Under a steady stream of commits the thread never quite catches up (new frames
 * arrive while it copies), so the WAL grows until the store's own connection, which still
 * checkpoints inline past {@link FALLBACK_PAGES} pages, copies the few frames the thread has
 * not and lets the next write restart the WAL: one inline checkpoint per 4,000 pages instead
 * of one per 1,000, with most of its copying already done. (Measured with 40,000 messages
 * through a consumer: the WAL peaked at 17-18 MiB; with a bound of 10,000 pages at 40 MiB, for
 * about the same throughput; with 2,000 at 9-10 MiB and about 15% fewer messages a second.)
 *
 * Nothing depends on the thread: it starts only after {@link START_AFTER_WRITES} writes (a
 * short-lived store never pays for one), and if it cannot start or dies, the connection goes
 * back to SQLite's 1,000 pages. A thread costs about 9 MiB of memory, so a process runs at
 * most {@link MAX_THREADS} of them: the stores that reach their write count while that many
 * run keep checkpointing inline, and try again after as many writes more.
 */
export class BackgroundCheckpointer {
  private state: 'counting' | 'starting' | 'running' | 'off' = 'counting';
  private counted = 0;
  private worker: Worker | undefined;
  /** [writes since the last checkpoint, stop flag, checkpoints made, thread ready]. */
  private readonly shared = new Int32Array(new SharedArrayBuffer(4 * 4));
  private exited: Promise<void> | undefined;

  constructor(
    private readonly db: BetterSqlite3.Database,
    private readonly path: string,
    private readonly limits: CheckpointLimits = DEFAULT_LIMITS,
  ) {}

  /** Counts `writes` committed write statements. */
  wrote(writes: number): void {
    this.noticeReady();
    if (this.state === 'running' || this.state === 'starting') {
      const before = Atomics.add(this.shared, PENDING, writes);
      if (before < this.limits.signalWrites && before + writes >= this.limits.signalWrites) {
        Atomics.notify(this.shared, PENDING, 1);
      }
    } else if (this.state === 'counting') {
      this.counted += writes;
      if (this.counted < this.limits.startAfterWrites) return;
      this.counted = 0;
      if (threads < this.limits.maxThreads) this.start();
    }
  }

  /** Checkpoints the thread has made (for tests and diagnostics). */
  get checkpoints(): number {
    return Atomics.load(this.shared, MADE);
  }

  /**
   * Whether the thread has opened its connection and checkpoints (false before it starts,
   * after `close`, or once it died).
   */
  get running(): boolean {
    return this.phase === 'running';
  }

  /**
   * `counting` writes before the thread starts, `starting` until it has opened its
   * connection, `running`, or `off` (closed, or the thread could not start or died).
   */
  get phase(): 'counting' | 'starting' | 'running' | 'off' {
    this.noticeReady();
    return this.state;
  }

  /**
   * A starting thread that has opened its connection is running: the connection's own
   * checkpoints move to the fallback bound. Read from shared memory rather than a message,
   * which a caller that never yields to the event loop would not see.
   */
  private noticeReady(): void {
    if (this.state === 'starting' && Atomics.load(this.shared, READY) === 1) {
      this.state = 'running';
      this.inline(this.limits.fallbackPages);
    }
  }

  /**
   * Stops the thread and waits for it to close its connection (before the store closes its
   * own, so that the last connection out removes the -wal file).
   */
  async close(): Promise<void> {
    const was = this.state;
    this.state = 'off';
    if (was === 'running' || was === 'starting') {
      // Unreferenced, the thread would let the process end while close() awaits its exit.
      this.worker?.ref();
      Atomics.store(this.shared, STOP, 1);
      // Changing the count too makes a thread that read STOP just before it was set, and is
      // about to wait, return at once instead of sleeping for idleMs.
      Atomics.add(this.shared, PENDING, 1);
      Atomics.notify(this.shared, PENDING, 1);
    }
    await this.exited;
  }

  private start(): void {
    this.state = 'starting';
    threads += 1;
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          driver: driverPath(),
          path: this.path,
          shared: this.shared,
          signalWrites: this.limits.signalWrites,
          idleMs: this.limits.idleMs,
        },
      });
    } catch {
      this.state = 'off';
      threads -= 1;
      return;
    }
    this.worker = worker;
    // An error in the thread (it could not open the file, say): checkpoints go back inline.
    worker.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      worker.once('exit', () => {
        threads -= 1;
        if (this.state !== 'off') {
          this.state = 'off';
          this.inline(SQLITE_DEFAULT_PAGES);
        }
        this.worker = undefined;
        resolve();
      });
    });
    // A store the program forgot to close must not keep the process alive (after the
    // listeners: adding one references the thread again).
    worker.unref();
  }

  private inline(pages: number): void {
    try {
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${pages}`);
    } catch {
      // A closed or broken connection: nothing left to checkpoint through it.
    }
  }
}

/** When the thread starts and how often it checkpoints. */
export interface CheckpointLimits {
  /** Writes the store makes before the thread starts. */
  startAfterWrites: number;
  /** Writes after which the thread checkpoints. */
  signalWrites: number;
  /** Longest the thread waits before checkpointing fewer writes. */
  idleMs: number;
  /** The inline checkpoint bound of the store's connection while the thread runs. */
  fallbackPages: number;
  /** Most threads of the process (of every checkpointer) running at once. */
  maxThreads: number;
}

/** SQLite's own `wal_autocheckpoint`. */
const SQLITE_DEFAULT_PAGES = 1000;
const START_AFTER_WRITES = 1000;
/**
 * A write changes a page or two, fewer when a batch shares pages. Checkpointing every 1,500
 * writes rather than 500 used 7-8% less CPU per message in a consumer (three interleaved
 * runs, 48-54 µs against 52-58), at the same rate and WAL size: a page changed again before
 * the next checkpoint is copied once.
 */
const SIGNAL_WRITES = 1500;
const IDLE_MS = 1000;
const FALLBACK_PAGES = 4 * SQLITE_DEFAULT_PAGES;
const MAX_THREADS = 2;

/** Checkpoint threads of this process, starting or running. */
let threads = 0;

export const DEFAULT_LIMITS: CheckpointLimits = Object.freeze({
  startAfterWrites: START_AFTER_WRITES,
  signalWrites: SIGNAL_WRITES,
  idleMs: IDLE_MS,
  fallbackPages: FALLBACK_PAGES,
  maxThreads: MAX_THREADS,
});

const PENDING = 0;
const STOP = 1;
const MADE = 2;
const READY = 3;

let driver: string | undefined;
/** better-sqlite3 as this module resolves it, so the thread loads the same build. */
function driverPath(): string {
  driver ??= createRequire(import.meta.url).resolve('better-sqlite3');
  return driver;
}

/**
 * The thread, as CommonJS source: a file of its own would need a separate path in the
 * TypeScript sources and the build. It exits on its own if it cannot open the file.
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const { path, shared, signalWrites, idleMs } = workerData;
const PENDING = ${PENDING}, STOP = ${STOP}, MADE = ${MADE}, READY = ${READY};
const db = new Database(path, { fileMustExist: true });
Atomics.store(shared, READY, 1);
for (;;) {
  const pending = Atomics.load(shared, PENDING);
  if (Atomics.load(shared, STOP) === 1) break;
  if (pending < signalWrites) {
    const woke = Atomics.wait(shared, PENDING, pending, idleMs);
    if (Atomics.load(shared, STOP) === 1) break;
    if (woke === 'not-equal') continue;
    if (Atomics.load(shared, PENDING) === 0) continue;
  }
  Atomics.exchange(shared, PENDING, 0);
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    Atomics.add(shared, MADE, 1);
  } catch {
    // Busy or an I/O error: the next round tries again, and the store's connection
    // still checkpoints inline past its fallback bound.
  }
}
db.close();
`;
