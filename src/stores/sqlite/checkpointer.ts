import { createRequire } from 'node:module';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
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
 * One thread serves every store of the process (see {@link CheckpointThread}): for each store
 * it opens its own connection to the store's file and runs `PRAGMA wal_checkpoint(PASSIVE)`,
 * which never blocks writers or readers (it copies what no reader still needs and leaves the
 * rest for the next round). A store counts its writes in shared memory; the thread sleeps
 * until a store has {@link SIGNAL_WRITES} writes piled up, or {@link IDLE_MS} passed with any,
 * then checkpoints that store's file. A checkpoint changes no row and is no commit, so it does
 * not change what any connection reads, nor `PRAGMA data_version`.
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
 * Nothing depends on the thread: a store joins it only after {@link START_AFTER_WRITES} writes
 * (a short-lived store never pays for it), and if the thread cannot open the store's file, or
 * dies, that store's connection goes back to SQLite's 1,000 pages for good. A thread that
 * fails before it could load the driver (or that cannot be created at all) is not started
 * again in this process: every store checkpoints inline, and the process gets one warning
 * ({@link CHECKPOINT_WARNING}) saying why, rather than one failed thread per store.
 */
export class BackgroundCheckpointer {
  private state: 'counting' | 'starting' | 'running' | 'off' = 'counting';
  private counted = 0;
  /** The process's checkpoint thread, while it serves this store. */
  private thread: CheckpointThread | undefined;
  /** [writes since the last checkpoint, stop flag, checkpoints made, connection open]. */
  private readonly shared = new Int32Array(new SharedArrayBuffer(4 * 4));
  /** Settles once the thread no longer serves this store (it closed its connection, or ended). */
  private left: Promise<void> | undefined;
  private resolveLeft: () => void = () => undefined;

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
        this.thread?.ring();
      }
    } else if (this.state === 'counting') {
      this.counted += writes;
      if (this.counted < this.limits.startAfterWrites) return;
      this.join();
    }
  }

  /** Checkpoints the thread has made of this store's file (for tests and diagnostics). */
  get checkpoints(): number {
    return Atomics.load(this.shared, MADE);
  }

  /**
   * Whether the thread has opened its connection to this store's file and checkpoints it
   * (false before, after `close`, or once the thread could not open the file or died).
   */
  get running(): boolean {
    return this.phase === 'running';
  }

  /**
   * `counting` writes before the store joins the thread, `starting` until the thread has
   * opened its connection, `running`, or `off` (closed, or the thread could not open the file
   * or died).
   */
  get phase(): 'counting' | 'starting' | 'running' | 'off' {
    this.noticeReady();
    return this.state;
  }

  /**
   * A starting store whose connection the thread has opened is running: the connection's own
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
   * Asks the thread to close its connection to this store's file and waits until it has
   * (before the store closes its own, so that the last connection out removes the -wal file).
   */
  async close(): Promise<void> {
    const was = this.state;
    this.state = 'off';
    const thread = this.thread;
    // A second close(), or a store the thread let go of: wait until it has let go (settled at
    // once if it never served this store, or already has).
    if (!thread || (was !== 'running' && was !== 'starting')) return this.left;
    Atomics.store(this.shared, STOP, 1);
    // Unreferenced, the thread would let the process end while close() waits for it.
    thread.hold();
    thread.ring();
    try {
      await this.left;
    } finally {
      thread.release();
    }
  }

  /** Called by the thread once it no longer serves this store (closed, failed or ended). */
  leftThread(): void {
    this.thread = undefined;
    if (this.state !== 'off') {
      this.state = 'off';
      this.inline(SQLITE_DEFAULT_PAGES);
    }
    this.resolveLeft();
  }

  private join(): void {
    const thread = CheckpointThread.get();
    if (thread === undefined) {
      // No thread can run in this process: checkpoints stay inline.
      this.state = 'off';
      return;
    }
    this.state = 'starting';
    this.thread = thread;
    this.left = new Promise((resolve) => {
      this.resolveLeft = resolve;
    });
    thread.add(this, {
      path: this.path,
      shared: this.shared,
      signalWrites: this.limits.signalWrites,
      idleMs: this.limits.idleMs,
    });
  }

  private inline(pages: number): void {
    try {
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${pages}`);
    } catch {
      // A closed or broken connection: nothing left to checkpoint through it.
    }
  }
}

/** What the thread needs to serve one store. */
interface MemberSetup {
  path: string;
  shared: Int32Array;
  signalWrites: number;
  idleMs: number;
}

/**
 * The checkpoint thread of the process, shared by every store: one thread of about 9 MiB
 * however many stores write (10 stores with a thread each used 145 MiB of RSS against 59 MiB
 * inline, measured before the thread was shared). It starts when the first store joins and
 * stops when the last one leaves.
 *
 * A store joins with a message and leaves through its stop flag; the thread sleeps on a
 * shared "bell" that a store rings when it has writes to checkpoint, joins or leaves. The
 * thread answers each store that leaves (or whose file it cannot open) with a message, and
 * each store's connection state is in that store's shared memory.
 */
class CheckpointThread {
  private static current: CheckpointThread | undefined;
  /** A thread failed to start: none is started again in this process. */
  static startFailed = false;
  /** A running thread failed, and the process was told (once is enough). */
  static warnedDeath = false;

  /** The running thread, or a new one; undefined when no thread can run in this process. */
  static get(): CheckpointThread | undefined {
    if (CheckpointThread.startFailed) return undefined;
    try {
      CheckpointThread.current ??= new CheckpointThread();
    } catch (error) {
      CheckpointThread.cannotStart(error);
      return undefined;
    }
    return CheckpointThread.current;
  }

  /** No thread will be started again in this process; says so once. */
  private static cannotStart(error: unknown): void {
    CheckpointThread.startFailed = true;
    warn(
      `the WAL checkpoint thread could not start (${firstLine(error)}); every SQLite store of this process checkpoints inline, as SQLite does by default`,
    );
  }

  private readonly worker: Worker;
  private readonly port: MessagePort;
  /** [rings, stop, started: the thread has loaded the driver]. */
  private readonly bell = new Int32Array(new SharedArrayBuffer(3 * 4));
  private readonly members = new Map<number, BackgroundCheckpointer>();
  private nextId = 1;
  /** close() calls waiting for the thread: while any does, the thread keeps the process alive. */
  private holds = 0;

  private constructor() {
    const { port1, port2 } = new MessageChannel();
    try {
      this.worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { driver: driverPath(), bell: this.bell, port: port2 },
        transferList: [port2],
      });
    } catch (error) {
      port1.close();
      throw error;
    }
    this.port = port1;
    this.port.on('message', (message: { left: number }) => this.leave(message.left));
    // An error in the thread: every store it served goes back inline (on exit, below), and a
    // store that joins from now on starts a new thread rather than join this dying one,
    // unless this one failed before it loaded the driver: a new one would fail alike.
    this.worker.on('error', (error) => {
      if (CheckpointThread.current === this) CheckpointThread.current = undefined;
      if (Atomics.load(this.bell, STARTED) === 0) {
        if (!CheckpointThread.startFailed) CheckpointThread.cannotStart(error);
      } else if (!CheckpointThread.warnedDeath) {
        CheckpointThread.warnedDeath = true;
        warn(
          `the WAL checkpoint thread failed (${firstLine(error)}); the stores it served checkpoint inline from now on`,
        );
      }
    });
    this.worker.once('exit', () => this.ended());
    // Stores the program forgot to close must not keep the process alive (after the
    // listeners: adding one references the port and the thread again).
    this.port.unref();
    this.worker.unref();
  }

  add(member: BackgroundCheckpointer, setup: MemberSetup): void {
    const id = this.nextId++;
    this.members.set(id, member);
    this.port.postMessage({ id, ...setup });
    this.ring();
  }

  /** Wakes the thread: a store has writes to checkpoint, joined or is leaving. */
  ring(): void {
    Atomics.add(this.bell, RINGS, 1);
    Atomics.notify(this.bell, RINGS, 1);
  }

  hold(): void {
    if (this.holds++ === 0) {
      this.worker.ref();
      this.port.ref();
    }
  }

  release(): void {
    if (--this.holds === 0) {
      this.worker.unref();
      this.port.unref();
    }
  }

  /** The thread no longer serves store `id`; once it serves none, it stops. */
  private leave(id: number): void {
    const member = this.members.get(id);
    this.members.delete(id);
    member?.leftThread();
    if (this.members.size === 0) this.stop();
  }

  private stop(): void {
    if (CheckpointThread.current === this) CheckpointThread.current = undefined;
    Atomics.store(this.bell, STOP_ALL, 1);
    this.ring();
  }

  private ended(): void {
    if (CheckpointThread.current === this) CheckpointThread.current = undefined;
    const members = [...this.members.values()];
    this.members.clear();
    for (const member of members) member.leftThread();
    this.port.close();
  }
}

/** One process warning of the checkpoint thread ({@link CHECKPOINT_WARNING}). */
function warn(what: string): void {
  process.emitWarning(`reprocess sqlite store: ${what}`, {
    type: 'ReprocessWarning',
    code: CHECKPOINT_WARNING,
  });
}

/** The first line of an error's message (a failed require lists its whole require stack). */
function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n', 1)[0] as string;
}

/** When a store joins the thread and how often the thread checkpoints its file. */
export interface CheckpointLimits {
  /** Writes the store makes before it joins the thread. */
  startAfterWrites: number;
  /** The store's writes after which the thread checkpoints its file. */
  signalWrites: number;
  /** Longest the thread waits before checkpointing fewer of the store's writes. */
  idleMs: number;
  /** The inline checkpoint bound of the store's connection while the thread serves it. */
  fallbackPages: number;
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

export const DEFAULT_LIMITS: CheckpointLimits = Object.freeze({
  startAfterWrites: START_AFTER_WRITES,
  signalWrites: SIGNAL_WRITES,
  idleMs: IDLE_MS,
  fallbackPages: FALLBACK_PAGES,
});

// A store's shared memory.
const PENDING = 0;
const STOP = 1;
const MADE = 2;
const READY = 3;
// The thread's bell.
const RINGS = 0;
const STOP_ALL = 1;
const STARTED = 2;

/** The `code` of the process warning emitted when no checkpoint thread can run. */
export const CHECKPOINT_WARNING = 'REPROCESS_SQLITE_CHECKPOINT_THREAD';

let driver: string | undefined;
/** better-sqlite3 as this module resolves it, so the thread loads the same build. */
function driverPath(): string {
  driver ??= createRequire(import.meta.url).resolve('better-sqlite3');
  return driver;
}

/**
 * For tests: the module the next checkpoint thread loads as its driver (undefined: the real
 * one), and a fresh start for a process in which no thread could run or one failed (as if
 * nothing had been warned of). Not exported by the package.
 */
export function setCheckpointDriverForTests(path: string | undefined): void {
  driver = path;
  CheckpointThread.startFailed = false;
  CheckpointThread.warnedDeath = false;
}

/**
 * The thread, as CommonJS source: a file of its own would need a separate path in the
 * TypeScript sources and the build. It never returns to its event loop: it takes the stores
 * that join with `receiveMessageOnPort`, and sleeps on the bell until a store rings or the
 * nearest store's idle time runs out. A store whose file it cannot open is told so at once
 * (`left`), as is one it closed the connection of.
 */
const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { bell, port } = workerData;
const PENDING = ${PENDING}, STOP = ${STOP}, MADE = ${MADE}, READY = ${READY};
const RINGS = ${RINGS}, STOP_ALL = ${STOP_ALL}, STARTED = ${STARTED};
const Database = require(workerData.driver);
Atomics.store(bell, STARTED, 1);
const members = new Map();

function closeQuietly(db) {
  try {
    db.close();
  } catch {
    // Nothing more to do with it.
  }
}

function takeJoins() {
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    const { id, path, shared, signalWrites, idleMs } = m.message;
    try {
      const db = new Database(path, { fileMustExist: true });
      members.set(id, { db, shared, signalWrites, idleMs, checkedAt: performance.now() });
      Atomics.store(shared, READY, 1);
    } catch {
      port.postMessage({ left: id });
    }
  }
}

// Every store that asked to leave, first: its close() waits for this, and a checkpoint of
// another file must not keep it waiting longer than the one already running.
function takeLeaves() {
  for (const [id, member] of members) {
    if (Atomics.load(member.shared, STOP) !== 1) continue;
    members.delete(id);
    closeQuietly(member.db);
    port.postMessage({ left: id });
  }
}

function serve(member, now) {
  const { shared } = member;
  if (Atomics.load(shared, STOP) === 1) return;
  const pending = Atomics.load(shared, PENDING);
  if (pending === 0) {
    member.checkedAt = now;
    return;
  }
  if (pending < member.signalWrites && now - member.checkedAt < member.idleMs) return;
  Atomics.exchange(shared, PENDING, 0);
  try {
    member.db.pragma('wal_checkpoint(PASSIVE)');
    Atomics.add(shared, MADE, 1);
  } catch {
    // An I/O error, say: the next round tries again, and the store's connection still
    // checkpoints inline past its fallback bound. SQLite's own automatic checkpoints drop
    // their errors alike; one that lasts shows in the store's writes, which do report.
  }
  member.checkedAt = performance.now();
  takeLeaves();
}

for (;;) {
  const rings = Atomics.load(bell, RINGS);
  takeJoins();
  if (Atomics.load(bell, STOP_ALL) === 1) break;
  takeLeaves();
  for (const member of members.values()) serve(member, performance.now());
  const now = performance.now();
  let sleepMs = 1000;
  for (const member of members.values()) {
    sleepMs = Math.min(sleepMs, Math.max(1, member.checkedAt + member.idleMs - now));
  }
  Atomics.wait(bell, RINGS, rings, sleepMs);
}
for (const member of members.values()) closeQuietly(member.db);
port.close();
`;
