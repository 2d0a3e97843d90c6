/**
 * A lease waiting for its first heartbeat (see {@link FirstBeatTicker}). The fields are the
 * ticker's bookkeeping, kept on the waiter itself: the waiting leases form a doubly linked
 * list, so joining and leaving it allocate nothing and hash nothing (a Map keyed by the lease
 * cost each operation an identity hash and a hash-table update).
 */
export abstract class FirstBeatWaiter {
  /** Monotonic time (`performance.now()`) the first beat is due; set by the ticker. */
  firstBeatDue = 0;
  /** Whether the ticker holds this waiter. */
  waitingFirstBeat = false;
  prevWaiting: FirstBeatWaiter | undefined = undefined;
  nextWaiting: FirstBeatWaiter | undefined = undefined;

  /** The shared wait is over: arm a timer of your own for the first beat, due in `ms`. */
  abstract armFirstBeat(ms: number): void;
}

/**
 * The first heartbeat of every lease on the system clock, under one shared Node timer.
 *
 * Nearly every operation ends long before its first beat is due (a third of the lease, 10 s
 * by default), yet setting and clearing a timer of its own cost each one a few microseconds
 * of CPU (a `Timeout` object, its async resource, the timer list, and the garbage of all
 * three). Here a lease only joins a map; the shared timer fires at the earliest first beat
 * among the leases waiting and hands every one of them over to a timer of its own, armed
 * for the time left until its beat. A lease that outlives the wait therefore beats when it
 * would have with a timer of its own (never later), and one that ends first never touches a
 * timer:
 *
 *   start ─ add(lease, 10 s) ──────────────────────────────── stop ─ delete(lease)
 *   start ─ add(lease, 10 s) ── shared timer ─ armFirstBeat(ms left) ── beat ── beat ─ ...
 *
 * Keeping the process alive: the shared timer is ref'd while some lease waits and unref'd
 * when none does, so a process exits (or not) exactly as it did when each lease held a timer
 * of its own. The timer is not cleared when the last lease leaves, since clearing and setting
 * it again for every operation is the very cost this saves: it stays armed, unref'd, until
 * its time comes (at most one heartbeat interval), then finds nothing to do.
 *
 * Time: due times are on the monotonic clock (`performance.now()`), so a jump of the wall
 * clock can neither delay a beat nor end a lease early. `setTimeout`, `clearTimeout` and
 * `performance` are read from the global scope at each call, so fake timers (vitest's replace
 * all three) drive this ticker as they drive every other timer; a timer armed under another
 * implementation than the current one is cleared with its own and armed again.
 *
 * Only for the system clock: an injected {@link Clock} cannot unref its timers, and a fake
 * one must see every timer, so leases on such clocks keep a timer of their own.
 */
export class FirstBeatTicker {
  /** The waiting leases, oldest first. */
  private head: FirstBeatWaiter | undefined;
  private tail: FirstBeatWaiter | undefined;
  private count = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Monotonic time the timer fires; never after the due time of a waiting lease. */
  private firesAt = Number.POSITIVE_INFINITY;
  /** The `setTimeout` that armed the timer, and the `clearTimeout` that goes with it. */
  private armedWith: typeof setTimeout | undefined;
  private clearWith: typeof clearTimeout | undefined;

  /** Leases waiting for their first beat (for tests). */
  get size(): number {
    return this.count;
  }

  /** Waits for the first beat of `waiter`, due in `delayMs` (at most 2^31 - 1). */
  add(waiter: FirstBeatWaiter, delayMs: number): void {
    if (waiter.waitingFirstBeat) this.delete(waiter);
    if (delayMs < 0) delayMs = 0;
    const due = performance.now() + delayMs;
    waiter.firstBeatDue = due;
    waiter.waitingFirstBeat = true;
    waiter.prevWaiting = this.tail;
    waiter.nextWaiting = undefined;
    if (this.tail === undefined) this.head = waiter;
    else this.tail.nextWaiting = waiter;
    this.tail = waiter;
    this.count++;
    if (due < this.firesAt || this.armedWith !== setTimeout) {
      this.arm(due, delayMs);
    } else if (this.count === 1) {
      this.timer?.ref();
    }
  }

  /** Stops waiting for `waiter` (its operation ended). Does nothing if it is not waiting. */
  delete(waiter: FirstBeatWaiter): void {
    if (!waiter.waitingFirstBeat) return;
    this.unlink(waiter);
    if (this.count === 0) this.timer?.unref();
  }

  private unlink(waiter: FirstBeatWaiter): void {
    const { prevWaiting: prev, nextWaiting: next } = waiter;
    if (prev === undefined) this.head = next;
    else prev.nextWaiting = next;
    if (next === undefined) this.tail = prev;
    else next.prevWaiting = prev;
    waiter.prevWaiting = undefined;
    waiter.nextWaiting = undefined;
    waiter.waitingFirstBeat = false;
    this.count--;
  }

  private arm(due: number, delayMs: number): void {
    if (this.timer !== undefined) this.clearWith?.(this.timer);
    this.firesAt = due;
    this.armedWith = setTimeout;
    this.clearWith = clearTimeout;
    this.timer = setTimeout(() => this.fire(), delayMs);
  }

  private fire(): void {
    this.timer = undefined;
    this.firesAt = Number.POSITIVE_INFINITY;
    if (this.count === 0) return;
    const now = performance.now();
    // Every waiter leaves the list before any is called back: one that is added again
    // (or stopped) from its callback finds the list consistent.
    const handOver: FirstBeatWaiter[] = [];
    for (let waiter = this.head; waiter !== undefined; waiter = waiter.nextWaiting) {
      handOver.push(waiter);
    }
    for (const waiter of handOver) this.unlink(waiter);
    // Rounded down: a beat a fraction of a millisecond early only renews the lease sooner.
    for (const waiter of handOver) {
      waiter.armFirstBeat(Math.max(0, Math.floor(waiter.firstBeatDue - now)));
    }
  }
}

/** The one ticker of the process (leases on the system clock). */
export const firstBeats = new FirstBeatTicker();
