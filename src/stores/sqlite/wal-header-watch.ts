import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';

/** Both copies of the WAL-index header at the start of the -shm file (sqlite.org/walformat.html). */
const HEADER_BYTES = 96;
/** One copy, in 32-bit words: the header is read and compared a word at a time. */
const COPY_WORDS = 12;
/**
 * `isInit`, 1 once a connection has built the header: the byte at offset 12, the lowest byte
 * of word 3 on a little-endian machine and the highest on a big-endian one.
 */
const IS_INIT_WORD = 3;
const IS_INIT_SHIFT = endianness() === 'LE' ? 0 : 24;
/** About how many recent reads {@link WalHeaderWatch.score} averages over. */
const WINDOW = 16;
/** While reads mostly found the header changed, one check in this many still reads it. */
const RETRY_EVERY = 16;

/**
 * `PRAGMA data_version` for a file in WAL mode, cheaper when nothing was committed.
 *
 * `data_version` opens a read transaction, whose shared-memory locks are `fcntl` calls: about
 * 4 µs. The WAL-index header at the start of the `-shm` file holds a counter that every
 * commit, by any connection, increments, in two copies written one after the other. Reading
 * both with one `pread` costs about 2 µs. When the header is byte for byte what it was just
 * before the last `data_version` was asked, nothing was committed since, and the version has
 * not changed. Any difference (a commit, the WAL restarting, a header being written, a copy
 * not matching the other) falls through to `data_version`, which alone tells this
 * connection's commits from those of others. Checkpoints write elsewhere in the file.
 *
 * Why the two copies suffice: a commit writes the second copy, then the first, before its
 * COMMIT returns. A commit that returned before {@link version} was called has both written;
 * one still being written shows two different copies; one that begins after the second copy
 * was read is concurrent with this call, which need not see it.
 *
 * When the header keeps changing (this connection or another is writing), reading it first
 * only adds its cost: the watch then goes straight to `data_version`, and reads the header
 * again on one check in {@link RETRY_EVERY}. If the `-shm` file cannot be read, every check
 * is `data_version`.
 *
 * The descriptor is never closed while the file is in use. Closing any descriptor of a file
 * drops every POSIX lock the process holds on it, and SQLite's connections hold theirs on the
 * `-shm` file: its "in use" lock and each reader's lock. Another process could then rebuild
 * the shared memory or checkpoint over a snapshot still being read. So one descriptor per
 * file is kept for the life of the process ({@link openShared}), and closed only once SQLite
 * has removed the file (its last connection closed), when no lock on it protects anything.
 */
export class WalHeaderWatch {
  private fd: number | undefined;
  private failed = false;
  // Int32Array rather than Buffer: comparing 12 words in a loop costs a fifth of two Buffer
  // compare calls, which weighs on a replay whose whole store side is 2 µs.
  private header = new Int32Array(HEADER_BYTES / 4);
  private snapshot = new Int32Array(HEADER_BYTES / 4);
  /** The version `data_version` gave right after {@link snapshot} was read. */
  private known: number | undefined;
  /** Share of recent header reads that found it unchanged (moving average). */
  private score = 1;
  private bypassed = 0;

  constructor(
    private readonly shmPath: string,
    private readonly dataVersion: () => number,
  ) {}

  /** The data version, as `PRAGMA data_version` would give it now. */
  version(): number {
    if (this.score < 0.25 && ++this.bypassed % RETRY_EVERY !== 0) return this.dataVersion();
    const read = this.read();
    // Both headers have matching copies (read() checked this one, and the snapshot was such a
    // header when it was kept), so their first copies tell whether they are equal.
    if (read && this.known !== undefined && sameWords(this.header, this.snapshot, 0)) {
      // A header found still is worth reading first again at once.
      this.score = Math.max(this.score + (1 - this.score) / WINDOW, 0.5);
      return this.known;
    }
    this.score -= this.score / WINDOW;
    return read ? this.observe() : this.dataVersion();
  }

  /**
   * Stops reading the header. Call it after the store's connection closed: the descriptor is
   * closed only if SQLite has removed the file meanwhile (see the class comment).
   */
  close(): void {
    this.failed = true;
    this.fd = undefined;
    releaseShared(this.shmPath);
  }

  /**
   * Keeps the header just read as the snapshot, then asks SQLite. The pair stays true for as
   * long as the header does not change, whatever else is asked meanwhile.
   */
  private observe(): number {
    [this.snapshot, this.header] = [this.header, this.snapshot];
    // Unknown until the answer: should the pragma throw, no stale version goes with the new
    // snapshot.
    this.known = undefined;
    this.known = this.dataVersion();
    return this.known;
  }

  /** Reads both header copies into {@link header}; false when they are not usable. */
  private read(): boolean {
    if (this.failed) return false;
    try {
      this.fd ??= openShared(this.shmPath);
      if (readSync(this.fd, this.header, 0, HEADER_BYTES, 0) !== HEADER_BYTES) return false;
    } catch {
      // Never closed here: see the class comment.
      this.failed = true;
      return false;
    }
    const h = this.header;
    return (
      ((h[IS_INIT_WORD] as number) >>> IS_INIT_SHIFT) % 256 === 1 && sameWords(h, h, COPY_WORDS)
    );
  }
}

/** Whether the first copy of `a` equals the copy of `b` that starts at word `at`. */
function sameWords(a: Int32Array, b: Int32Array, at: number): boolean {
  for (let i = 0; i < COPY_WORDS; i++) if (a[i] !== b[at + i]) return false;
  return true;
}

/** Descriptors of `-shm` files by path, shared by every watch of the process. */
const shared = new Map<string, number>();

/**
 * A descriptor of the `-shm` file at `path`, opened once per process. One whose file SQLite
 * has since removed (and maybe created anew) is closed and replaced.
 */
function openShared(path: string): number {
  const held = shared.get(path);
  if (held !== undefined) {
    if (fstatSync(held).nlink > 0) return held;
    closeSync(held);
    shared.delete(path);
  }
  const fd = openSync(path, 'r');
  shared.set(path, fd);
  return fd;
}

/** Closes the descriptor of `path` if its file was removed: nothing locks a removed file. */
function releaseShared(path: string): void {
  const held = shared.get(path);
  if (held === undefined) return;
  try {
    if (fstatSync(held).nlink > 0) return;
    closeSync(held);
  } catch {
    // Already unusable: forget it.
  }
  shared.delete(path);
}
