import { mkdirSync, realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { type Clock, systemClock } from '../../clock.js';
import {
  InvalidArgumentError,
  RecordCorruptError,
  StoreUnavailableError,
  isReprocessError,
} from '../../errors.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  ListPage,
} from '../../idempotency/store.js';
import { BeginOrder, foundNew } from '../begin-order.js';
import { KeyBatcher } from '../key-batcher.js';
import { microtask } from '../microtask.js';
import { showValue } from '../show-value.js';
import { BackgroundCheckpointer } from './checkpointer.js';
import { ReplayCache } from './replay-cache.js';
import { WalHeaderWatch } from './wal-header-watch.js';
import { META_TABLE, checkTableName, ensureSchema, metaNames, schemaVersion } from './schema.js';
import { isBusy, sqliteCode, translateSqliteError } from './sqlite-errors.js';
import { decodeKeyCursor, encodeKeyCursor, listLimit, listStatus } from '../list-options.js';
import { checkWellFormedKey, checkWellFormedText } from '../well-formed.js';

/**
 * A better-sqlite3 (12.x) `Database`, by the members the store uses. Structural, so that
 * compiling against `reprocess/sqlite` needs no `@types/better-sqlite3` (the driver ships no
 * types of its own); pass the `Database` you opened.
 */
export interface SqliteDatabase {
  readonly name: string;
  readonly open: boolean;
  readonly inTransaction: boolean;
  prepare(source: string): unknown;
  exec(source: string): unknown;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  transaction(fn: (...args: never[]) => unknown): unknown;
  close(): unknown;
}

/** Options of {@link createSqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * The database file (created with its directory when missing), or `:memory:`. Default
   * `.reprocess/idempotency.sqlite` under the working directory. Ignored with `database`.
   */
  path?: string;
  /**
   * A connection you opened. The store leaves its pragmas and journal mode alone (except
   * `busyTimeoutMs` when given) and does not close it.
   */
  database?: SqliteDatabase;
  /** The store's clock for leases, expiry and tokens (default: the system clock). */
  clock?: Clock;
  /** Records table (default `reprocess_idempotency`); several tables can share one file. */
  table?: string;
  /**
   * Create the table on first use (default true). `false`: the table must be there already
   * (made by `createSchema()` or `reprocess store init`), and a missing one is
   * StoreUnavailableError on first use: for tools that inspect a file and must not write a
   * new, empty table into it because its name was mistyped. `createSchema()` still creates it.
   */
  createTable?: boolean;
  /** How long SQLite waits for another connection's write lock before giving up (default 5000). */
  busyTimeoutMs?: number;
  /** Extra attempts, with a short pause, after a wait past busy_timeout (default 3). */
  busyRetries?: number;
  /**
   * `normal` (default): WAL with synchronous=NORMAL, durable across process crashes; a power
   * loss can roll back the last commits. `full`: every commit is fsynced (slower).
   */
  synchronous?: 'normal' | 'full';
  /**
   * Group commit (default true): writes (`begin` of a free key, `complete`, `fail`,
   * `release`, `heartbeat`, `saveStep`) made in the same tick on distinct keys run in one
   * write transaction, one commit for all. A call alone runs at once as without it, a
   * repeated key waits for the next batch, and each call is decided as if alone; see
   * docs/readme/sqlite.md. `false`: one transaction per call.
   */
  batch?: boolean | SqliteBatchOptions;
  /**
   * Replay cache: finished records (completed or failed) that `begin` read are kept in memory,
   * so that the next replays of their keys skip reading the table. Each hit first asks SQLite
   * whether another connection has written since (`PRAGMA data_version`), and any such write
   * empties the cache; expiry is checked on every hit. Default: on, up to 8 MiB, when the store
   * opens its own connection; off with `database`, whose other users' writes on that same
   * connection SQLite cannot report. `false` turns it off. See docs/readme/sqlite.md.
   */
  replayCache?: boolean | SqliteReplayCacheOptions;
  /**
   * Where WAL checkpoints run (copying committed pages from the -wal file back into the
   * database file). `background` (default for a file the store opens): on the process's
   * checkpoint thread (one for every store, about 9 MiB), with its own connection to the file,
   * from the store's first 1,000 writes on, so that most commits on the event loop no longer
   * wait for the copy and its fsyncs; the store's connection still checkpoints inline past
   * 4,000 pages (under steady writes the WAL grows to that). `inline`: SQLite's default, inside
   * the commit that crosses 1,000 pages. Ignored with `database` and `:memory:`.
   */
  checkpoint?: 'background' | 'inline';
}

/** Tuning of {@link SqliteStoreOptions.replayCache}. */
export interface SqliteReplayCacheOptions {
  /** Memory for cached records, counted as two bytes per character of their text (default 8 MiB). */
  maxBytes?: number;
}

/** Tuning of {@link SqliteStoreOptions.batch}. */
export interface SqliteBatchOptions {
  /** Most calls in one write transaction (default 128). */
  maxBatchSize?: number;
}

/** The SQLite store: the object the core uses plus `createSchema` for deployment scripts. */
export interface SqliteStore extends IdempotencyStore {
  readonly name: 'sqlite';
  /** The file path (or `:memory:`). */
  readonly path: string;
  /** Creates (or migrates) the schema now instead of on first use. Idempotent. */
  createSchema(): Promise<void>;
  /** Closes the connection when the store opened it. */
  close(): Promise<void>;
}

/** Default file of the embedded store, relative to the working directory. */
export const DEFAULT_SQLITE_PATH = '.reprocess/idempotency.sqlite';

const DEFAULT_TABLE = 'reprocess_idempotency';
/** The name list errors give. */
const STORE = 'sqlite store';
const PURGE_CHUNK = 500;
const DEFAULT_MAX_BATCH = 128;
const DEFAULT_REPLAY_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * A record as the statements select it: a raw row (an array, cheaper than an object per row),
 * the key last and only where the caller does not know it already.
 */
type Row = [
  fingerprint: unknown,
  status: unknown,
  token: unknown,
  attempts: unknown,
  leaseUntil: unknown,
  expiresAt: unknown,
  result: unknown,
  error: unknown,
  steps: unknown,
  createdAt: unknown,
  updatedAt: unknown,
  key?: unknown,
];

const COLUMNS = `fingerprint, status, token, attempts, lease_until, expires_at, result, error, steps,
  created_at, updated_at`;

/**
 * Creates the embedded SQLite store (better-sqlite3 12, WAL, one file). The schema is created
 * on first use (or by `createSchema()`); every transition is one atomic statement or one
 * IMMEDIATE transaction, so several processes can share the file.
 *
 * @example
 * const store = createSqliteStore({ path: 'data/idempotency.sqlite' });
 * const charge = idempotent(chargeCard, { store, key: 'requestId', scope: 'charge' });
 */
export function createSqliteStore(options: SqliteStoreOptions = {}): SqliteStore {
  return SqliteIdempotencyStore.open(options);
}

/** The options of a store, checked and with their defaults. */
interface StoreSettings {
  clock: Clock;
  table: string;
  busyRetries: number;
  maxBatch: number;
  replayCacheBytes: number;
  checkpoint: 'background' | 'inline';
  createTable: boolean;
}

/** How often the operations counted as open are swept of those whose lease ended. */
const OPEN_SWEEP_MS = 100;

class SqliteIdempotencyStore implements SqliteStore {
  readonly name = 'sqlite' as const;
  readonly path: string;
  private readonly db: BetterSqlite3.Database;
  private readonly owned: boolean;
  private readonly clock: Clock;
  /** Leases are decided on this process's clock (see IdempotencyStore.leaseClock). */
  get leaseClock(): Clock {
    return this.clock;
  }
  private readonly table: string;
  private readonly busyRetries: number;
  private readonly createTable: boolean;
  private readonly batcher: KeyBatcher<WriteCall, Outcome | Failed> | undefined;
  private statements: Statements | undefined;
  private closed = false;
  /** The one closing, once close() was called. */
  private closing: Promise<void> | undefined;
  /** A write ran alone in this tick: the next ones of the tick go to a batch. */
  private tickTaken = false;
  private readonly endTick = () => {
    this.tickTaken = false;
  };
  /** Calls submitted to the batcher and not answered yet. */
  private waiting = 0;
  /** Whether the begins of a batch read their keys first, or insert first. */
  private readonly order = new BeginOrder();
  /** Operations this store acquired and has not seen finished: key -> end of lease. */
  private readonly open = new Map<string, number>();
  private sweptAt = Number.NEGATIVE_INFINITY;
  /** Finished records served to replays without a read (see ReplayCache). */
  private readonly replays: ReplayCache | undefined;
  /** Runs WAL checkpoints off the event loop (a file the store opened; see checkpointer.ts). */
  private readonly checkpointer: BackgroundCheckpointer | undefined;
  /** Reads the WAL-index header for the replay cache (a file the store opened). */
  private readonly walWatch: WalHeaderWatch | undefined;

  static open(options: SqliteStoreOptions): SqliteIdempotencyStore {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('createSqliteStore options must be an object');
    }
    const table = checkTableName(options.table ?? DEFAULT_TABLE);
    const busyTimeoutMs = checkCount(options.busyTimeoutMs, 'busyTimeoutMs');
    const busyRetries = checkCount(options.busyRetries, 'busyRetries') ?? 3;
    const synchronous = options.synchronous ?? 'normal';
    if (synchronous !== 'normal' && synchronous !== 'full') {
      throw new InvalidArgumentError(
        `sqlite store synchronous must be 'normal' or 'full'; got ${JSON.stringify(synchronous)}`,
      );
    }
    const clock = options.clock ?? systemClock;
    const maxBatch = batchSize(options.batch);
    const replayCacheBytes = replayCacheSize(options.replayCache, options.database !== undefined);
    const createTable = options.createTable ?? true;
    if (typeof createTable !== 'boolean') {
      throw new InvalidArgumentError(
        `sqlite store createTable must be a boolean; got ${showValue(createTable)}`,
      );
    }
    const checkpoint = options.checkpoint ?? 'background';
    if (checkpoint !== 'background' && checkpoint !== 'inline') {
      throw new InvalidArgumentError(
        `sqlite store checkpoint must be 'background' or 'inline'; got ${showValue(checkpoint)}`,
      );
    }
    const settings: StoreSettings = {
      clock,
      table,
      busyRetries,
      maxBatch,
      replayCacheBytes,
      checkpoint,
      createTable,
    };

    if (options.database) {
      // The structural type names what is used; the object is the driver's own.
      const db = options.database as unknown as BetterSqlite3.Database;
      if (busyTimeoutMs !== undefined) db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      return new SqliteIdempotencyStore(db, false, db.name, settings);
    }

    const path = options.path ?? DEFAULT_SQLITE_PATH;
    if (typeof path !== 'string' || path === '') {
      throw new InvalidArgumentError(
        `sqlite store path must be a non-empty file path or ':memory:'; got ${JSON.stringify(path)}`,
      );
    }
    const memory = path === ':memory:';
    const where = memory ? ':memory:' : resolve(path);
    let db: BetterSqlite3.Database | undefined;
    try {
      if (!memory) makeDirectory(dirname(where));
      db = new Database(where, { timeout: busyTimeoutMs ?? 5000 });
      // journal_mode reads the file header: a file that is not a database fails here.
      if (!memory) db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    } catch (error) {
      db?.close();
      throw openError(error, where);
    }
    return new SqliteIdempotencyStore(db, true, where, settings);
  }

  private constructor(
    db: BetterSqlite3.Database,
    owned: boolean,
    path: string,
    settings: StoreSettings,
  ) {
    this.db = db;
    this.owned = owned;
    this.path = path;
    this.clock = settings.clock;
    this.table = settings.table;
    this.busyRetries = settings.busyRetries;
    this.createTable = settings.createTable;
    // A file this store opened itself is in WAL mode, and only this store closes it.
    const ownFile = owned && path !== ':memory:';
    this.checkpointer =
      ownFile && settings.checkpoint === 'background'
        ? new BackgroundCheckpointer(db, path)
        : undefined;
    const pragma = () => this.prepared().dataVersion.get() as number;
    this.walWatch = ownFile && settings.replayCacheBytes > 0 ? walWatchOf(path, pragma) : undefined;
    const watch = this.walWatch;
    this.replays =
      settings.replayCacheBytes > 0
        ? new ReplayCache(settings.replayCacheBytes, watch ? () => watch.version() : pragma)
        : undefined;
    // One connection, and a batch runs synchronously: one batch at a time. The calls made
    // while it runs (in the same tick) leave together as the next one. A batch waits for the
    // event loop's next turn, not a microtask: it costs no round trip, and it meets the calls of
    // every message a consumer starts in this turn (measured on JetStream, whose iterator starts
    // one message per few microtasks: about 3 calls a batch under a microtask, 64 with a turn).
    this.batcher =
      settings.maxBatch > 1
        ? new KeyBatcher<WriteCall, Outcome | Failed>({
            maxBatchSize: settings.maxBatch,
            maxInFlight: 1,
            gather: 'turn',
            keyOf: (call) => call.key,
            runOne: (call) => this.runAlone(call),
            runMany: (calls) => this.runMany(calls),
          })
        : undefined;
  }

  async createSchema(): Promise<void> {
    await this.guard('creating the schema', () => this.prepared(true));
  }

  // ------------------------------------------------------------------ transitions

  async begin(
    key: string,
    fingerprint: string,
    leaseArg: number,
    ttlArg: number,
  ): Promise<BeginResult> {
    checkKey(key);
    checkText(fingerprint, 'fingerprint');
    const leaseMs = wholeMs(leaseArg, 'leaseMs');
    const ttlMs = wholeMs(ttlArg, 'ttlMs');
    if (this.replays !== undefined && !this.closed) {
      let record = this.replays.get(key, this.now());
      if (record instanceof Promise) record = await record;
      if (record !== undefined) {
        this.order.saw(false);
        return { kind: 'existing', record };
      }
    }
    let result: BeginResult;
    if (!this.alone()) {
      // Read with the other begins of the batch, in one read transaction (no write lock);
      // only those that find their key free then write, in the batch's write transaction.
      const call: BeginCall = { kind: 'begin', key, fingerprint, leaseMs, ttlMs, read: false };
      result = (await this.batched(call)) as BeginResult;
    } else if (this.order.insertFirst()) {
      // Most recent keys were new: insert at once, without the read. The insert writes
      // nothing on a key that has a record, and the begin then reads it and decides.
      const call: BeginCall = { kind: 'begin', key, fingerprint, leaseMs, ttlMs, read: true };
      result = (await this.writeNow(call)) as BeginResult;
      this.order.saw(foundNew(result));
    } else {
      let read = this.guard('begin', () => this.beginRead(key, fingerprint, leaseMs, ttlMs));
      if (read instanceof Promise) read = await read;
      result = read.kind === 'begin' ? ((await this.writeNow(read)) as BeginResult) : read;
    }
    if (result.kind === 'acquired' && this.batcher) this.open.set(key, result.leaseUntil);
    return result;
  }

  async complete(key: string, token: number, result: string, ttlMs: number): Promise<FencedResult> {
    checkKey(key);
    checkToken(token);
    checkText(result, 'result');
    const ttl = wholeMs(ttlMs, 'ttlMs');
    this.open.delete(key);
    return (await this.write({
      kind: 'complete',
      key,
      token,
      text: result,
      ttlMs: ttl,
    })) as FencedResult;
  }

  async fail(key: string, token: number, error: string, ttlMs: number): Promise<FencedResult> {
    checkKey(key);
    checkToken(token);
    checkText(error, 'error');
    const ttl = wholeMs(ttlMs, 'ttlMs');
    this.open.delete(key);
    return (await this.write({
      kind: 'fail',
      key,
      token,
      text: error,
      ttlMs: ttl,
    })) as FencedResult;
  }

  async release(key: string, token: number, ttlMs?: number): Promise<FencedResult> {
    checkKey(key);
    checkToken(token);
    const keep = ttlMs === undefined ? 0 : wholeMs(ttlMs, 'ttlMs');
    this.open.delete(key);
    return (await this.write({ kind: 'release', key, token, keepMs: keep })) as FencedResult;
  }

  async heartbeat(key: string, token: number, leaseMs: number): Promise<HeartbeatResult> {
    checkKey(key);
    checkToken(token);
    const lease = wholeMs(leaseMs, 'leaseMs');
    const beat = (await this.write({
      kind: 'heartbeat',
      key,
      token,
      leaseMs: lease,
    })) as HeartbeatResult;
    if (beat.kind === 'ok' && this.open.has(key)) this.open.set(key, beat.leaseUntil);
    return beat;
  }

  async saveStep(key: string, token: number, name: string, result: string): Promise<FencedResult> {
    checkKey(key);
    checkToken(token);
    checkText(name, 'step name');
    checkText(result, 'step result');
    return (await this.write({ kind: 'saveStep', key, token, name, text: result })) as FencedResult;
  }

  /**
   * The read half of begin: the answer when the record is there and not acquirable (a replay,
   * a live lease), else the write to make. A completed record never changes, and a live lease
   * can only be taken by its own expiry, so this answer needs no write lock.
   */
  private beginRead(
    key: string,
    fingerprint: string,
    leaseMs: number,
    ttlMs: number,
  ): BeginResult | BeginCall {
    const seen = this.prepared().select.get(key) as Row | undefined;
    this.order.saw(seen === undefined);
    if (seen && !acquirable(seen, fingerprint, this.now())) {
      return { kind: 'existing', record: this.toExisting(key, seen) };
    }
    const call: BeginCall = { kind: 'begin', key, fingerprint, leaseMs, ttlMs, read: true };
    if (seen) call.seen = seen;
    return call;
  }

  /**
   * Whether a call runs at once, alone: without batching, or when it is the first of its
   * tick, no batch is waiting, and at most one other operation acquired here is unfinished (so
   * a sequential caller never waits for a batch). The other calls go to the next batch: those
   * of the same tick, and those of operations running side by side. A server handling
   * requests one per I/O callback starts each in a tick of its own, so the tick alone would
   * let every one commit alone; the operations still open tell that they run together.
   */
  private alone(): boolean {
    if (!this.batcher) return true;
    if (this.tickTaken || this.waiting > 0) return false;
    if (this.open.size > 1 && this.othersOpen()) return false;
    this.tickTaken = true;
    microtask(this.endTick);
    return true;
  }

  /**
   * Whether more than one operation acquired here is still open. An operation whose caller
   * never finishes it (it crashed, or uses the store directly) counts until its lease ends;
   * expired entries are swept at most every OPEN_SWEEP_MS.
   */
  private othersOpen(): boolean {
    const now = this.clock.now();
    if (now - this.sweptAt >= OPEN_SWEEP_MS) {
      this.sweptAt = now;
      for (const [key, leaseUntil] of this.open) if (leaseUntil <= now) this.open.delete(key);
    }
    return this.open.size > 1;
  }

  /** Runs a write: at once when {@link alone}, else in the next batch. */
  private write(call: WriteCall): Outcome | Promise<Outcome> {
    return this.alone() ? this.writeNow(call) : this.batched(call);
  }

  private writeNow(call: WriteCall): Outcome | Promise<Outcome> {
    return this.guard(
      () => doingOf(call),
      () => {
        const outcome = this.run(this.prepared(), call, this.now(), false);
        this.checkpointer?.wrote(1);
        return outcome;
      },
    );
  }

  private async batched(call: WriteCall): Promise<Outcome> {
    this.waiting++;
    let outcome: Outcome | Failed;
    try {
      outcome = await (this.batcher as KeyBatcher<WriteCall, Outcome | Failed>).submit(call);
    } finally {
      this.waiting--;
    }
    if (outcome instanceof Failed) throw outcome.error;
    return outcome;
  }

  /** One call of a batch that is alone: its own transactions, as without batching. */
  private async runAlone(call: WriteCall): Promise<Outcome> {
    return this.guard(
      () => doingOf(call),
      () => {
        let write = call;
        if (write.kind === 'begin' && !write.read) {
          const read = this.beginRead(write.key, write.fingerprint, write.leaseMs, write.ttlMs);
          if (read.kind !== 'begin') return read;
          write = read;
        }
        const outcome = this.run(this.prepared(), write, this.now(), false);
        this.checkpointer?.wrote(1);
        return outcome;
      },
    );
  }

  /**
   * Several calls on distinct keys: first the reads of the begins, in one read transaction
   * (a replay or a live lease is answered there, without the write lock), then every write
   * in one IMMEDIATE transaction: one commit for all. Each call's outcome is decided as if it
   * ran alone (distinct keys cannot see each other's rows), and none is answered before the
   * commit. A call that fails on its own (a corrupt record) fails alone; a SQLite error rolls
   * the whole transaction back, and then every call runs alone, so that it too is the failure
   * of one call only. A write lock held past busy_timeout fails the batch's writes as it would
   * each of them alone: the batch is tried again a few times, then the calls that needed the
   * lock fail, and those the reads answered (which need no lock in WAL mode) keep their answer.
   */
  private async runMany(calls: WriteCall[]): Promise<Array<Outcome | Failed>> {
    let error: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        const outcomes = this.runBatch(this.prepared(), calls);
        this.checkpointer?.wrote(calls.length);
        return outcomes;
      } catch (thrown) {
        error = thrown;
      }
      const cause = error instanceof WritesBusy ? error.cause : error;
      if (!isBusy(cause) || attempt >= this.busyRetries || this.closed) break;
      await pause(10 * 2 ** attempt + Math.random() * 10);
    }
    if (error instanceof WritesBusy) {
      const { cause, outcomes } = error;
      return calls.map(
        (call, i) =>
          outcomes[i] ?? new Failed(translateSqliteError(cause, this.path, doingOf(call))),
      );
    }
    if (isBusy(error) || isReprocessError(error)) {
      throw translateSqliteError(error, this.path, `${calls.length} batched calls`);
    }
    return Promise.all(
      calls.map((call) =>
        this.runAlone(call).then(
          (outcome) => outcome,
          (failure: unknown) => new Failed(failure),
        ),
      ),
    );
  }

  private runBatch(s: Statements, calls: WriteCall[]): Array<Outcome | Failed> {
    const now = this.now();
    const outcomes: Array<Outcome | Failed | undefined> = new Array(calls.length);
    const writes = calls.slice();
    const unread = calls.some((call) => call.kind === 'begin' && !call.read);
    const insertFirst = unread && this.order.insertFirst();
    if (insertFirst) {
      // Most recent keys were new: their begins skip the read and go straight to the insert,
      // which writes nothing on a key that has a record; that begin then decides in the
      // write transaction, as one that lost a race does.
      for (let i = 0; i < calls.length; i++) {
        const call = calls[i] as WriteCall;
        if (call.kind === 'begin' && !call.read) writes[i] = { ...call, read: true };
      }
    } else if (unread) {
      s.inTransaction.deferred(() => {
        for (let i = 0; i < calls.length; i++) {
          const call = calls[i] as WriteCall;
          if (call.kind !== 'begin' || call.read) continue;
          try {
            const seen = s.select.get(call.key) as Row | undefined;
            this.order.saw(seen === undefined);
            if (seen && !acquirable(seen, call.fingerprint, now)) {
              outcomes[i] = { kind: 'existing', record: this.toExisting(call.key, seen) };
            } else {
              writes[i] = seen ? { ...call, read: true, seen } : { ...call, read: true };
            }
          } catch (error) {
            if (!isReprocessError(error)) throw error;
            outcomes[i] = new Failed(error);
          }
        }
      });
    }
    const pending = writes.filter((_, i) => outcomes[i] === undefined);
    if (pending.length > 0) {
      let written: Array<Outcome | Failed>;
      try {
        written = s.batch.immediate(pending, now);
      } catch (error) {
        // The answers of the reads stand whatever the writes meet; a busy lock reports them.
        if (isBusy(error)) throw new WritesBusy(error, outcomes);
        throw error;
      }
      let next = 0;
      for (let i = 0; i < calls.length; i++) {
        if (outcomes[i] !== undefined) continue;
        const outcome = written[next++] as Outcome | Failed;
        outcomes[i] = outcome;
        const call = calls[i] as WriteCall;
        if (insertFirst && call.kind === 'begin' && !call.read) {
          this.order.saw(!(outcome instanceof Failed) && foundNew(outcome as BeginResult));
        }
      }
    }
    return outcomes as Array<Outcome | Failed>;
  }

  /**
   * Makes one write. `inTransaction`: inside a batch's IMMEDIATE transaction (a begin that
   * lost a race then decides without a transaction of its own).
   */
  private run(s: Statements, call: WriteCall, now: number, inTransaction: boolean): Outcome {
    switch (call.kind) {
      case 'begin':
        return this.beginWrite(s, call, now, inTransaction);
      case 'complete':
        return s.complete.run(call.text, now + call.ttlMs, now, call.key, call.token).changes === 1
          ? OK
          : LOST;
      case 'fail':
        return s.fail.run(call.text, now + call.ttlMs, now, call.key, call.token).changes === 1
          ? OK
          : LOST;
      case 'release':
        // keepMs 0 (no ttl given): max(expires_at, 0) leaves the expiry as it is.
        return s.release.run(call.keepMs > 0 ? now + call.keepMs : 0, now, call.key, call.token)
          .changes === 1
          ? OK
          : LOST;
      case 'heartbeat': {
        const leaseUntil = now + call.leaseMs;
        const { changes } = s.heartbeat.run(leaseUntil, leaseUntil, now, call.key, call.token);
        return changes === 1 ? { kind: 'ok', leaseUntil } : LOST;
      }
      case 'saveStep':
        // json_patch merges one member into the stored object inside the UPDATE, so two steps
        // saved at once cannot overwrite each other's read-modify-write.
        return s.saveStep.run(call.name, call.text, now, call.key, call.token).changes === 1
          ? OK
          : LOST;
    }
  }

  /** The write half of begin, after a read that found the key free (or acquirable). */
  private beginWrite(
    s: Statements,
    call: BeginCall,
    now: number,
    inTransaction: boolean,
  ): BeginResult {
    const { key, fingerprint } = call;
    const leaseUntil = now + call.leaseMs;
    // An operation never expires while its lease is live.
    const expiresAt = now + Math.max(call.ttlMs, call.leaseMs);
    let seen = call.seen;
    if (!seen) {
      // The common case, a new key: a plain insert with the token from the clock. It
      // writes nothing when the key has a record: inserted by another process since the
      // read, or never read (a batch that inserts first). It also writes nothing when a
      // deleted record of this key held a token this large (the high-water mark). Those go
      // to the general path below, after reading the record as a read first would have.
      const token = now * 1000;
      const { changes } = s.insert.run(
        key,
        fingerprint,
        token,
        leaseUntil,
        expiresAt,
        now,
        now,
        token,
      );
      if (changes === 1) {
        return { kind: 'acquired', token, leaseUntil, attempts: 1, steps: {}, takeover: false };
      }
      seen = s.select.get(key) as Row | undefined;
      if (seen && !acquirable(seen, fingerprint, now)) {
        return { kind: 'existing', record: this.toExisting(key, seen) };
      }
    }
    if (seen && seen[8] !== '{}' && !((seen[5] as number) <= now)) {
      // Refuse to take over a record whose steps cannot be read back, before writing. An
      // expired record starts afresh without its steps, so what they hold does not matter.
      parseSteps(seen[8], this.path, key);
    }
    const params = { key, fingerprint, now, nowToken: now * 1000, leaseUntil, expiresAt };
    // The upsert decides and writes in one statement: two callers that both read "free"
    // cannot both acquire, because the second one's WHERE sees the first one's lease.
    // all(), not get(): outside a transaction this statement commits on its own, and only a
    // statement run to its end reports a commit that failed (a full disk, an I/O error);
    // better-sqlite3's get() resets it after the first row and drops that error, so the
    // caller would be told "acquired" for a write that was rolled back.
    const won = s.acquire.all(params)[0] as AcquiredRow | undefined;
    if (won) return acquiredResult(won, leaseUntil, this.path, key);
    // Lost the race (or the record is not acquirable after all): decide again and read the
    // winner in one IMMEDIATE transaction, so the answer is one consistent moment.
    return inTransaction ? s.decide(params) : s.acquireOrRead.immediate(params);
  }

  // ------------------------------------------------------------------ operators

  async get(key: string): Promise<IdempotencyRecord | undefined> {
    checkKey(key);
    return this.guard('get', () => {
      const row = this.prepared().select.get(key) as Row | undefined;
      return row && toRecord(key, row, this.path);
    });
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.guard('delete', () => {
      const deleted = this.prepared().delete.run(key).changes > 0;
      this.checkpointer?.wrote(1);
      // After the statement, in the same synchronous step: a begin that ran while this
      // delete waited for a busy lock may have cached the record again, and this connection's
      // own delete does not change data_version.
      this.replays?.delete(key);
      return deleted;
    });
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const take = listLimit(STORE, options.limit);
    const status = listStatus(STORE, options.status);
    const after = options.cursor === undefined ? '' : decodeKeyCursor(STORE, options.cursor);
    return this.guard('list', () => {
      const rows = this.prepared().list.all({
        after,
        status: status ?? null,
        take: take + 1,
      }) as Row[];
      const page = rows.slice(0, take);
      const records = page.map((row) => toRecord(row[11] as string, row, this.path));
      const last = records[records.length - 1];
      return rows.length > take && last
        ? { records, cursor: encodeKeyCursor(last.key) }
        : { records };
    });
  }

  async purgeExpired(options: { limit?: number } = {}): Promise<number> {
    const limit = options.limit;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
      throw new InvalidArgumentError(
        `purgeExpired limit must be a whole number >= 0; got ${limit}`,
      );
    }
    const now = this.now();
    let removed = 0;
    let after = Number.MIN_SAFE_INTEGER;
    // One chunk per write transaction, so writers in other processes wait at most one chunk.
    while (limit === undefined || removed < limit) {
      const take = Math.min(PURGE_CHUNK, (limit ?? Number.POSITIVE_INFINITY) - removed);
      const rowids = await this.guard('purgeExpired', () => {
        const purged = this.prepared().purge.all(after, now, take) as number[];
        this.checkpointer?.wrote(purged.length);
        // Records are only cached while alive, but a clock set back could make a purged one
        // look alive; this connection's deletes do not change data_version.
        if (purged.length > 0) this.replays?.clear();
        return purged;
      });
      removed += rowids.length;
      if (rowids.length < take) break;
      for (const rowid of rowids) if (rowid > after) after = rowid;
    }
    return removed;
  }

  /**
   * Answers the calls already made, then closes. Every call of close() returns the one
   * closing: a second call resolves only once the connection is closed.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    // Calls already made are answered first.
    await this.batcher?.settled();
    this.closed = true;
    this.statements = undefined;
    this.replays?.clear();
    // The thread's connection closes first, so that this one, the last, removes the -wal file.
    await this.checkpointer?.close();
    if (this.owned) this.db.close();
    // After the connection: the watch may then close its descriptor of the -shm file.
    this.walWatch?.close();
  }

  // ------------------------------------------------------------------ internals

  private now(): number {
    return Math.floor(this.clock.now());
  }

  /**
   * The cached statements, preparing them (and creating the schema, unless the table must be
   * there already and `create` is not set) on first use.
   */
  private prepared(create = this.createTable): Statements {
    if (this.closed)
      throw new StoreUnavailableError(`sqlite store ${this.path}: the store is closed`);
    if (!this.statements) {
      if (!create && schemaVersion(this.db, this.table) === 0) {
        throw new StoreUnavailableError(
          `sqlite store ${this.path}: there is no table "${this.table}" in this file; create it with createSchema() or \`reprocess store init\`, or check the table name`,
        );
      }
      ensureSchema(this.db, this.table, this.path);
      this.statements = prepare(this.db, this.table, this.path, (s, call, now) =>
        this.run(s, call, now, true),
      );
      this.replays?.start();
    }
    return this.statements;
  }

  /** The record of a begin that found it not acquirable; a finished one goes to the cache. */
  private toExisting(key: string, row: Row): IdempotencyRecord {
    const record = toRecord(key, row, this.path);
    if (this.replays !== undefined && record.status !== 'in_progress') this.replays.add(record);
    return record;
  }

  /**
   * Runs one transition, retrying a few times when the lock stayed taken past busy_timeout
   * (a failed statement wrote nothing, so a retry is safe), and types every driver error.
   * The pause uses real time, not the store clock: it waits for another process.
   */
  private guard<T>(doing: string | (() => string), work: () => T): T | Promise<T> {
    // The answer is returned as it is, not wrapped in a promise of its own: the public
    // methods are async already, and this is the hot path of every transition.
    try {
      return work();
    } catch (error) {
      return this.retryBusy(error, doing, work);
    }
  }

  private async retryBusy<T>(
    first: unknown,
    doing: string | (() => string),
    work: () => T,
  ): Promise<T> {
    let error = first;
    for (let attempt = 0; isBusy(error) && attempt < this.busyRetries && !this.closed; attempt++) {
      await pause(10 * 2 ** attempt + Math.random() * 10);
      try {
        return work();
      } catch (again) {
        error = again;
      }
    }
    throw translateSqliteError(error, this.path, typeof doing === 'string' ? doing : doing());
  }
}

// ------------------------------------------------------------------ statements

interface AcquiredRow {
  token: number;
  attempts: number;
  steps: string;
}

interface AcquireParams {
  key: string;
  fingerprint: string;
  now: number;
  nowToken: number;
  leaseUntil: number;
  expiresAt: number;
}

/** A begin that found its key free (or acquirable) and has to write, or has yet to read. */
interface BeginCall {
  kind: 'begin';
  key: string;
  fingerprint: string;
  leaseMs: number;
  ttlMs: number;
  /** Whether the key was read already (false: the batch reads it first). */
  read: boolean;
  /** The row the read saw, if any. */
  seen?: Row;
}

/** A write, as it waits for its batch. */
type WriteCall =
  | BeginCall
  | { kind: 'complete' | 'fail'; key: string; token: number; text: string; ttlMs: number }
  | { kind: 'release'; key: string; token: number; keepMs: number }
  | { kind: 'heartbeat'; key: string; token: number; leaseMs: number }
  | { kind: 'saveStep'; key: string; token: number; name: string; text: string };

type Outcome = BeginResult | FencedResult | HeartbeatResult;

/** The error of one call of a batch, handed to that call only. */
class Failed {
  constructor(readonly error: unknown) {}
}

/** The write transaction of a batch met a busy lock; `outcomes` holds what its reads decided. */
class WritesBusy {
  constructor(
    readonly cause: unknown,
    readonly outcomes: ReadonlyArray<Outcome | Failed | undefined>,
  ) {}
}

function doingOf(call: WriteCall): string {
  return call.kind === 'saveStep' ? `saveStep on record ${JSON.stringify(call.key)}` : call.kind;
}

interface Statements {
  select: BetterSqlite3.Statement;
  insert: BetterSqlite3.Statement;
  acquire: BetterSqlite3.Statement;
  /** Acquire, else read the winner; inside a write transaction. */
  decide: (params: AcquireParams) => BeginResult;
  acquireOrRead: BetterSqlite3.Transaction<(params: AcquireParams) => BeginResult>;
  batch: BetterSqlite3.Transaction<(calls: WriteCall[], now: number) => Array<Outcome | Failed>>;
  /** Runs `work` in a transaction (`.deferred`: a read transaction while it only reads). */
  inTransaction: BetterSqlite3.Transaction<(work: () => void) => void>;
  complete: BetterSqlite3.Statement;
  fail: BetterSqlite3.Statement;
  release: BetterSqlite3.Statement;
  heartbeat: BetterSqlite3.Statement;
  saveStep: BetterSqlite3.Statement;
  delete: BetterSqlite3.Statement;
  /** `PRAGMA data_version`: changes when another connection has committed. */
  dataVersion: BetterSqlite3.Statement;
  list: BetterSqlite3.Statement;
  purge: BetterSqlite3.Statement;
}

function prepare(
  db: BetterSqlite3.Database,
  t: string,
  where: string,
  run: (s: Statements, call: WriteCall, now: number) => Outcome,
): Statements {
  const highWater = `(SELECT value FROM ${META_TABLE} WHERE name = '${metaNames(t).highWater}')`;
  const fenced = `WHERE key = ? AND token = ? AND status = 'in_progress'`;
  const select = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE key = ?`).raw(true);
  // A new key whose token (from the clock) is above every deleted token. The SELECT form is
  // what lets the insert carry that condition; ON CONFLICT makes a concurrent insert of the
  // same key a no-op instead of an error.
  const insert = db.prepare(`
    INSERT INTO ${t} (key, fingerprint, status, token, attempts, lease_until, expires_at,
                      steps, created_at, updated_at)
    SELECT ?, ?, 'in_progress', ?, 1, ?, ?, '{}', ?, ?
    WHERE ? > coalesce(${highWater}, 0)
    ON CONFLICT (key) DO NOTHING`);
  // Acquire when free: no row, an expired row (a new operation: steps and attempts start
  // afresh), or an in-progress row of the same fingerprint whose lease ended (a takeover:
  // steps kept, attempts + 1). The token is the greatest of the clock in microseconds, the
  // row's token + 1 and the high-water mark of deleted rows + 1, so it only ever grows.
  // A takeover keeps createdAt and expiresAt (moved on only as far as the new lease).
  // SET expressions read the old row, so the CASEs see the old expires_at.
  const acquire = db.prepare(`
    INSERT INTO ${t} (key, fingerprint, status, token, attempts, lease_until, expires_at,
                      steps, created_at, updated_at)
    VALUES (@key, @fingerprint, 'in_progress', max(@nowToken, coalesce(${highWater}, 0) + 1), 1,
            @leaseUntil, @expiresAt, '{}', @now, @now)
    ON CONFLICT (key) DO UPDATE SET
      fingerprint = excluded.fingerprint,
      status = 'in_progress',
      token = max(@nowToken, token + 1, coalesce(${highWater}, 0) + 1),
      attempts = CASE WHEN expires_at <= @now THEN 1 ELSE attempts + 1 END,
      steps = CASE WHEN expires_at <= @now THEN '{}' ELSE steps END,
      created_at = CASE WHEN expires_at <= @now THEN @now ELSE created_at END,
      lease_until = excluded.lease_until,
      expires_at = CASE WHEN expires_at <= @now THEN excluded.expires_at
                        ELSE max(expires_at, excluded.lease_until) END,
      result = NULL,
      error = NULL,
      updated_at = @now
    WHERE expires_at <= @now
       OR (status = 'in_progress' AND lease_until <= @now AND fingerprint = excluded.fingerprint)
    RETURNING token, attempts, steps`);
  const decide = (params: AcquireParams): BeginResult => {
    const won = acquire.all(params)[0] as AcquiredRow | undefined;
    if (won) return acquiredResult(won, params.leaseUntil, where, params.key);
    const row = select.get(params.key) as Row | undefined;
    if (!row) throw new Error(`record ${params.key} vanished inside a write transaction`);
    return { kind: 'existing', record: toRecord(params.key, row, where) };
  };
  // A batch: each call in turn. A reprocess error (a corrupt record, found before that call
  // wrote) is that call's answer; any other error rolls the whole batch back.
  const batch = db.transaction((calls: WriteCall[], now: number): Array<Outcome | Failed> => {
    const outcomes: Array<Outcome | Failed> = [];
    for (const call of calls) {
      try {
        outcomes.push(run(statements, call, now));
      } catch (error) {
        if (!isReprocessError(error)) throw error;
        outcomes.push(new Failed(error));
      }
    }
    return outcomes;
  });
  const statements: Statements = {
    select,
    insert,
    acquire,
    decide,
    acquireOrRead: db.transaction(decide),
    batch,
    inTransaction: db.transaction((work: () => void) => work()),
    complete: db.prepare(
      `UPDATE ${t} SET status = 'completed', result = ?, lease_until = 0, expires_at = ?, updated_at = ? ${fenced}`,
    ),
    fail: db.prepare(
      `UPDATE ${t} SET status = 'failed', error = ?, lease_until = 0, expires_at = ?, updated_at = ? ${fenced}`,
    ),
    // Kept at least until the first parameter (now + ttl; now when no ttl was given).
    release: db.prepare(
      `UPDATE ${t} SET lease_until = 0, expires_at = max(expires_at, ?), updated_at = ? ${fenced}`,
    ),
    heartbeat: db.prepare(
      `UPDATE ${t} SET lease_until = ?, expires_at = max(expires_at, ?), updated_at = ? ${fenced}`,
    ),
    saveStep: db.prepare(
      `UPDATE ${t} SET steps = json_patch(steps, json_object(?, ?)), updated_at = ? ${fenced}`,
    ),
    delete: db.prepare(`DELETE FROM ${t} WHERE key = ?`),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
    list: db
      .prepare(`
      SELECT ${COLUMNS}, key FROM ${t}
      WHERE key > @after AND (@status IS NULL OR status = @status)
      ORDER BY key LIMIT @take`)
      .raw(true),
    // The next chunk of expired records after a rowid, in rowid order (a scan of the table
    // in the order rows were written: see schema.ts).
    purge: db
      .prepare(
        `DELETE FROM ${t} WHERE rowid IN (
           SELECT rowid FROM ${t} WHERE rowid > ? AND expires_at <= ? ORDER BY rowid LIMIT ?
         ) RETURNING rowid`,
      )
      .pluck(),
  };
  return statements;
}

/**
 * How the replay cache of a file the store opened (so in WAL mode) asks for the data
 * version: through the WAL-index header. SQLite puts the `-shm` file beside the database file
 * a symbolic link points to, not beside the link; a path it cannot resolve gets no watch.
 */
function walWatchOf(path: string, pragma: () => number): WalHeaderWatch | undefined {
  try {
    return new WalHeaderWatch(`${realpathSync(path)}-shm`, pragma);
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------ rows and checks

const OK: FencedResult = Object.freeze({ kind: 'ok' });
const LOST: FencedResult & HeartbeatResult = Object.freeze({ kind: 'lease_lost' });

function acquirable(row: Row, fingerprint: string, now: number): boolean {
  if ((row[5] as number) <= now) return true;
  return row[1] === 'in_progress' && (row[4] as number) <= now && row[0] === fingerprint;
}

function acquiredResult(
  won: AcquiredRow,
  leaseUntil: number,
  where: string,
  key: string,
): BeginResult {
  return {
    kind: 'acquired',
    token: won.token,
    leaseUntil,
    attempts: won.attempts,
    steps: won.steps === '{}' ? {} : parseSteps(won.steps, where, key),
    takeover: won.attempts > 1,
  };
}

/**
 * A row as a record, checked. Straight-line checks on row positions: this runs on every
 * replay, and a loop over a table of columns with a closure for the message cost several
 * times as much.
 */
function toRecord(key: string, row: Row, where: string): IdempotencyRecord {
  const fingerprint = row[0];
  const status = row[1];
  const token = row[2];
  const attempts = row[3];
  const leaseUntil = row[4];
  const expiresAt = row[5];
  const result = row[6];
  const error = row[7];
  const steps = row[8];
  const createdAt = row[9];
  const updatedAt = row[10];
  if (status !== 'in_progress' && status !== 'completed' && status !== 'failed') {
    throw corruptRecord(where, key, `an unknown status ${JSON.stringify(status)}`);
  }
  if (!Number.isSafeInteger(token)) throw notWhole(where, key, 'token');
  if (!Number.isSafeInteger(attempts)) throw notWhole(where, key, 'attempts');
  if (!Number.isSafeInteger(leaseUntil)) throw notWhole(where, key, 'leaseUntil');
  if (!Number.isSafeInteger(expiresAt)) throw notWhole(where, key, 'expiresAt');
  if (!Number.isSafeInteger(createdAt)) throw notWhole(where, key, 'createdAt');
  if (!Number.isSafeInteger(updatedAt)) throw notWhole(where, key, 'updatedAt');
  if (typeof fingerprint !== 'string')
    throw corruptRecord(where, key, 'a fingerprint that is not text');
  if (result !== null && typeof result !== 'string') {
    throw corruptRecord(where, key, 'a result that is not text');
  }
  if (error !== null && typeof error !== 'string') {
    throw corruptRecord(where, key, 'an error that is not text');
  }
  const record: IdempotencyRecord = {
    key,
    fingerprint,
    status,
    token: token as number,
    attempts: attempts as number,
    leaseUntil: leaseUntil as number,
    expiresAt: expiresAt as number,
    steps: steps === '{}' ? {} : parseSteps(steps, where, key),
    createdAt: createdAt as number,
    updatedAt: updatedAt as number,
  };
  if (result !== null) record.result = result;
  if (error !== null) record.error = error;
  return record;
}

function corruptRecord(where: string, key: string, what: string): RecordCorruptError {
  return new RecordCorruptError(`sqlite store ${where}: record ${JSON.stringify(key)} has ${what}`);
}

function notWhole(where: string, key: string, field: string): RecordCorruptError {
  return corruptRecord(where, key, `a ${field} that is not a whole number`);
}

function parseSteps(text: unknown, where: string, key: string): Record<string, string> {
  const bad = (why: string, cause?: unknown) =>
    new RecordCorruptError(
      `sqlite store ${where}: record ${JSON.stringify(key)} has steps that ${why}`,
      cause,
    );
  if (typeof text !== 'string') throw bad('are not text');
  let steps: unknown;
  try {
    steps = JSON.parse(text);
  } catch {
    // Without the parser's error: its message quotes the text, which holds step results.
    throw bad('are not valid JSON');
  }
  if (typeof steps !== 'object' || steps === null || Array.isArray(steps)) {
    throw bad('are not a JSON object');
  }
  for (const value of Object.values(steps)) {
    if (typeof value !== 'string') throw bad('hold a value that is not an encoded string');
  }
  return steps as Record<string, string>;
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key === '') {
    throw new InvalidArgumentError(
      `sqlite store: key must be a non-empty string; got ${JSON.stringify(key)}`,
    );
  }
  checkWellFormedKey('sqlite store', key);
}

function checkToken(token: unknown): asserts token is number {
  if (!Number.isSafeInteger(token)) {
    throw new InvalidArgumentError(
      `sqlite store: token must be a whole number; got ${String(token)}`,
    );
  }
}

/**
 * A lease or TTL in whole milliseconds, rounded up: the table keeps times as integers (a
 * fraction would make a record no reader accepts), and a bound is never shortened.
 */
function wholeMs(ms: unknown, what: string): number {
  // The bound of the other stores (about 317 years): past it, now + ms is no longer a whole
  // number SQLite keeps as an INTEGER, and the record could not be read back.
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > MAX_DURATION_MS) {
    throw new InvalidArgumentError(
      `sqlite store: ${what} must be a finite number of milliseconds > 0 and at most ${MAX_DURATION_MS}; got ${String(ms)}`,
    );
  }
  return Math.ceil(ms);
}

const MAX_DURATION_MS = 1e13;

/** Throws unless `text` is a string SQLite gives back as it was (no lone surrogate). */
function checkText(text: unknown, what: string): asserts text is string {
  if (typeof text !== 'string') {
    throw new InvalidArgumentError(`sqlite store: ${what} must be a string; got ${typeof text}`);
  }
  checkWellFormedText('sqlite store', what, text);
}

function checkCount(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `sqlite store ${what} must be a whole number >= 0; got ${String(value)}`,
    );
  }
  return value;
}

/** The replay cache's bound from the `replayCache` option; 0 turns it off. */
function replayCacheSize(option: SqliteStoreOptions['replayCache'], shared: boolean): number {
  if (option === undefined) return shared ? 0 : DEFAULT_REPLAY_CACHE_BYTES;
  if (option === false) return 0;
  if (option === true) return DEFAULT_REPLAY_CACHE_BYTES;
  if (typeof option !== 'object' || option === null) {
    throw new InvalidArgumentError(
      `sqlite store replayCache must be a boolean or { maxBytes }; got ${JSON.stringify(option)}`,
    );
  }
  const bytes = option.maxBytes ?? DEFAULT_REPLAY_CACHE_BYTES;
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new InvalidArgumentError(
      `sqlite store replayCache.maxBytes must be a whole number >= 0; got ${String(bytes)}`,
    );
  }
  return bytes;
}

/** The most calls per batch from the `batch` option; 1 (or `false`) turns batching off. */
function batchSize(batch: SqliteStoreOptions['batch']): number {
  if (batch === undefined || batch === true) return DEFAULT_MAX_BATCH;
  if (batch === false) return 1;
  if (typeof batch !== 'object' || batch === null) {
    throw new InvalidArgumentError(
      `sqlite store batch must be a boolean or { maxBatchSize }; got ${JSON.stringify(batch)}`,
    );
  }
  const size = batch.maxBatchSize ?? DEFAULT_MAX_BATCH;
  if (!Number.isInteger(size) || size < 1 || size > 10_000) {
    throw new InvalidArgumentError(
      `sqlite store batch.maxBatchSize must be a whole number from 1 to 10000; got ${String(size)}`,
    );
  }
  return size;
}

function openError(error: unknown, where: string): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && !sqliteCode(error)) {
    // A file-system error from creating the directory (EACCES, EROFS, ENOENT, ENOTDIR...).
    return new StoreUnavailableError(
      `sqlite store ${where}: cannot create the directory ${dirname(where)} (${code}); choose a writable path`,
      error,
    );
  }
  return translateSqliteError(error, where, 'opening the database');
}

/**
 * `mkdir -p` that cannot spin: Node's recursive mkdir loops forever where mkdir reports
 * ENOENT for a parent that exists (procfs, e.g. /proc/self/x), so walk up one level at a time.
 */
function makeDirectory(dir: string, depth = 0): void {
  try {
    mkdirSync(dir);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'EEXIST') return;
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir || depth > 64) throw error;
    makeDirectory(parent, depth + 1);
    try {
      mkdirSync(dir);
    } catch (again) {
      if ((again as { code?: unknown }).code !== 'EEXIST') throw again;
    }
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
