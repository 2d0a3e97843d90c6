import type { IdempotencyRecord } from '../../idempotency/store.js';
import { microtask } from '../microtask.js';

/** Bytes counted for an entry beside its stored text (the record object, the key, the map). */
const ENTRY_OVERHEAD = 256;
/** Bytes counted for each step beside its text (a property of the steps object). */
const STEP_OVERHEAD = 64;
/** About how many recent checks {@link ReplayCache.score} averages over. */
const WINDOW = 16;
/** While checks mostly found other writers, one replay in this many is still cached. */
const PROBE_EVERY = 32;

/**
 * Finished records (completed or failed) that `begin` read, kept so that the next replays of
 * their keys are answered without reading the table again.
 *
 * A finished record never changes: only its expiry, a delete or a purge ends it. Expiry is
 * checked against the store's clock on every hit, and this connection's deletes and purges
 * drop entries. Writes of other connections (other processes, other store objects on the
 * file) are seen through SQLite's `PRAGMA data_version`, which changes when another
 * connection has committed since the last time this one asked. Every hit asks; when the
 * answer changed, the whole cache is dropped and the begin reads the table. Entries are only
 * added after an observation of the version, so an entry served under an unchanged version
 * was read after that observation and nothing was committed elsewhere since.
 *
 * With busy writers in other processes almost every check finds a change, and each costs a
 * statement for nothing; the cache then mostly stops taking entries (one in
 * {@link PROBE_EVERY} still goes in, to notice when the other writers go quiet).
 *
 * Writes made through the same connection by someone else than the store are invisible to
 * `data_version`: that is why a store on a connection the caller passed in has no cache
 * unless asked for one.
 */
export class ReplayCache {
  private readonly entries = new Map<string, IdempotencyRecord>();
  private bytes = 0;
  /**
   * The data version last observed; entries were all added after that observation. Undefined
   * before {@link start} and after a check that failed: nothing is added until it is known.
   */
  private version: number | undefined;
  private started = false;
  /** Share of recent checks that found no other writer (moving average). */
  private score = 1;
  private skipped = 0;
  /** A check ran in this stretch of microtasks: the hits after it share the next one. */
  private checked = false;
  private readonly endStretch = () => {
    this.checked = false;
  };
  /** Hits waiting for the shared check. */
  private waiting: Array<{
    key: string;
    record: IdempotencyRecord;
    answer: (record: IdempotencyRecord | undefined) => void;
  }> = [];
  private readonly checkWaiting = () => this.flush();

  constructor(
    private readonly maxBytes: number,
    private readonly dataVersion: () => number,
  ) {}

  /** Observes the data version, so that entries can be added. */
  start(): void {
    this.started = true;
    this.observe();
  }

  private observe(): void {
    try {
      this.version = this.dataVersion();
    } catch {
      // The read that follows meets the same trouble and reports it properly.
      this.version = undefined;
    }
  }

  /**
   * The finished record of `key` when it is cached, not expired at `now`, and no other
   * connection wrote since it was read; undefined when the begin must read the table. A
   * failed check drops everything.
   *
   * The first hit of a stretch of microtasks checks at once. The hits that follow it in the
   * same stretch (the replays of a consumer or a server with many operations in flight) wait
   * for one check shared by all of them, made after every one of them was asked: the answer
   * is then as fresh as a check of their own, for the price of one statement.
   */
  get(
    key: string,
    now: number,
  ): IdempotencyRecord | Promise<IdempotencyRecord | undefined> | undefined {
    const record = this.entries.get(key);
    if (record === undefined) {
      // After a failed check: observe again here, before the read that follows this miss.
      if (this.version === undefined && this.started) this.observe();
      return undefined;
    }
    if (record.expiresAt <= now) {
      this.delete(key);
      return undefined;
    }
    if (this.checked) {
      return new Promise((answer) => {
        if (this.waiting.push({ key, record, answer }) === 1) microtask(this.checkWaiting);
      });
    }
    this.checked = true;
    microtask(this.endStretch);
    return this.check() ? record : undefined;
  }

  /** Asks for the data version: true when no other connection wrote since the last time. */
  private check(): boolean {
    const seen = this.version;
    this.observe();
    const unchanged = this.version !== undefined && this.version === seen;
    this.score += ((unchanged ? 1 : 0) - this.score) / WINDOW;
    if (!unchanged) this.clear();
    return unchanged;
  }

  /** The shared check of the hits waiting: each is served if its entry is still there. */
  private flush(): void {
    const waiting = this.waiting;
    this.waiting = [];
    const unchanged = this.check();
    for (const { key, record, answer } of waiting) {
      // Deleted or purged by this store meanwhile: the begin reads the table.
      answer(unchanged && this.entries.get(key) === record ? record : undefined);
    }
  }

  /** Keeps a finished record that `begin` just read (after {@link start}). */
  add(record: IdempotencyRecord): void {
    if (this.version === undefined) return;
    if (this.score < 0.25 && ++this.skipped % PROBE_EVERY !== 0) return;
    const size = sizeOf(record);
    // One record may take at most an eighth of the cache: a few big results must not evict
    // everything else.
    if (size > this.maxBytes / 8) return;
    const old = this.entries.get(record.key);
    if (old !== undefined) {
      this.entries.delete(record.key);
      this.bytes -= sizeOf(old);
    }
    while (this.bytes + size > this.maxBytes) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value[0]);
      this.bytes -= sizeOf(oldest.value[1]);
    }
    freeze(record);
    this.entries.set(record.key, record);
    this.bytes += size;
  }

  delete(key: string): void {
    const record = this.entries.get(key);
    if (record === undefined) return;
    this.entries.delete(key);
    this.bytes -= sizeOf(record);
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  /** Number of records held (tests, diagnostics). */
  get size(): number {
    return this.entries.size;
  }
}

/**
 * An estimate of an entry's memory, meant to be on the high side: two bytes per character of
 * its text, plus the objects around it (the entry, and each step).
 */
function sizeOf(record: IdempotencyRecord): number {
  let chars = record.key.length + record.fingerprint.length;
  let size = ENTRY_OVERHEAD;
  if (record.result !== undefined) chars += record.result.length;
  if (record.error !== undefined) chars += record.error.length;
  for (const name in record.steps) {
    chars += name.length + (record.steps[name] as string).length;
    size += STEP_OVERHEAD;
  }
  return size + 2 * chars;
}

/** Served to every replay of the key: nobody may change it in between. */
function freeze(record: IdempotencyRecord): void {
  Object.freeze(record.steps);
  Object.freeze(record);
}
