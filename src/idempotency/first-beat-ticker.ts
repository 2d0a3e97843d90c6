/** A lease waiting for its first heartbeat (see {@link firstBeats}). */
export interface FirstBeatWaiter {
  /** The wait is over: arm a timer of your own for the first beat, due in `ms`. */
  armFirstBeat(ms: number): void;
}

/**
 * The first heartbeat of every lease on the system clock, under one shared Node timer.
 *
 * Nearly every operation ends long before its first beat is due (a third of the lease, 10 s
 * by default), yet setting and clearing a timer of its own cost each one 2.5-6 µs of CPU
 * (measured with idempotent() on the memory and SQLite stores). Here a lease only joins a
 * map; the shared timer fires at the earliest first beat among the leases waiting and hands
 * every one of them over to a timer of its own, for the time left until its beat. A lease
 * that outlives the wait is therefore beaten exactly when it would have been, and one that
 * ends before it never touches a timer:
 *
 *   start ─ add(lease, 10 s) ──────────────────── stop ─ delete(lease)
 *   start ─ add(lease, 10 s) ── shared timer ─ armFirstBeat(ms left) ── beat ── beat ─ ...
 *
 * The shared timer keeps the process alive only while some lease waits (ref'd while the map
 * is not empty, unref'd when it is), as each lease's own timer did. Unlike those, it is not
 * cleared when the last lease ends: it stays armed, unref'd, until its time comes (at most
 * one heartbeat interval), since clearing and setting it again for every operation is the
 * very cost this saves. Due times are taken on
 * the monotonic clock (the global `performance`, which fake timers replace along with
 * `setTimeout`), so a jump of the wall clock cannot delay a beat.
 *
 * Only for the system clock: an injected Clock's timers cannot be unref'd, and a fake one
 * must see every timer; leases on such clocks arm their own timers as before.
 */
class FirstBeatTicker {
  /** Each waiting lease with the monotonic time its first beat is due. */
  private readonly waiting = new Map<FirstBeatWaiter, number>();
  private timer: NodeJS.Timeout | undefined;
  /** Monotonic time the timer fires; never after the due time of a waiting lease. */
  private firesAt = Number.POSITIVE_INFINITY;
  /** The `setTimeout` that armed the timer. */
  private armedWith: typeof setTimeout | undefined;

  /** Waits for the first beat of `waiter`, due in `delayMs`. */
  add(waiter: FirstBeatWaiter, delayMs: number): void {
    // Fake timers (tests) replace setTimeout and performance, and put them back: a timer armed
    // by the other implementation would never fire here, and its time is on another base.
    if (this.armedWith !== setTimeout) this.firesAt = Number.POSITIVE_INFINITY;
    const due = performance.now() + delayMs;
    this.waiting.set(waiter, due);
    if (due < this.firesAt) {
      this.arm(due, delayMs);
    } else if (this.waiting.size === 1) {
      this.timer?.ref();
    }
  }

  /** Stops waiting for `waiter` (its operation ended). */
  delete(waiter: FirstBeatWaiter): void {
    if (this.waiting.delete(waiter) && this.waiting.size === 0) this.timer?.unref();
  }

  private arm(due: number, delayMs: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.firesAt = due;
    this.armedWith = setTimeout;
    this.timer = setTimeout(() => this.fire(), delayMs);
  }

  private fire(): void {
    this.timer = undefined;
    this.firesAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const handOver = [...this.waiting];
    this.waiting.clear();
    for (const [waiter, due] of handOver) waiter.armFirstBeat(Math.max(0, due - now));
  }
}

/** The one ticker of the process (leases on the system clock). */
export const firstBeats = new FirstBeatTicker();
