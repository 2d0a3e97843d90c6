import { type Clock, elapsedOn, systemClock } from '../clock.js';
import { LeaseLostError } from '../errors.js';
import { FirstBeatWaiter, firstBeats } from './first-beat-ticker.js';
import type { IdempotencyStore } from './store.js';
import { callStore, checkHeartbeat } from './store-results.js';

/**
 * Keeps one acquisition's lease alive while `fn` runs, and owns the signal that tells `fn`
 * the lease is gone.
 *
 *   acquire ── beat ── beat ── beat ── stop()            (each beat: lease = now + leaseMs)
 *                        └─ lease_lost ─► signal aborts with LeaseLostError, beats stop
 *
 * One beat is in flight at a time: the next is scheduled only when the previous answered.
 * A beat the store fails to answer is retried at the next interval; when no beat has
 * succeeded for a whole lease (on this process's monotonic clock), the lease is presumed lost
 * and the signal aborts, since another worker may have taken over by now.
 *
 * Between beats a single timer does both jobs: it fires at the next beat or at the end of
 * the lease, whichever is sooner, and a beat that finds the lease over presumes it lost
 * instead of sending. Only while a beat is in flight is a second timer armed, at the end of
 * the lease, so that a beat that never answers (a stalled connection) still ends the lease.
 * On the system clock the wait for the first beat is shared by all leases (see
 * first-beat-ticker.ts), so an operation shorter than the interval (the common case) sets no
 * timer at all; on another clock it sets and clears one.
 */
/**
 * The longest delay a timer takes: Node runs a `setTimeout` longer than 2^31 - 1 ms after
 * 1 ms, which would turn a long lease into heartbeats in a loop or an instant loss.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const NOT_RENEWED =
  'the lease could not be renewed before it ended; another worker may hold it now';

/** The reason a step started after its run settled does not run (see LeaseKeeper.finish). */
const RUN_SETTLED = () =>
  new LeaseLostError(
    'the run has already settled (completed, failed or released): a step started after it does not run its work',
  );

export class LeaseKeeper extends FirstBeatWaiter {
  // Created on first use: most runs never look at the signal, and the hot path shows it.
  private controller: AbortController | undefined;
  private lostWith: LeaseLostError | undefined;
  private cancelTimer: (() => void) | undefined;
  private cancelDeadline: (() => void) | undefined;
  private stopped = false;
  /** The run has settled: see {@link finish}. */
  private finished = false;
  /** It settled with a failure: the signal aborts. */
  private failed = false;
  /**
   * Before this (on the clock's `elapsed()`, which a step of the wall clock does not move),
   * the lease is surely still ours.
   */
  private safeUntil: number;

  /**
   * The lease's end as the store gave it, on the store's {@link IdempotencyStore.leaseClock}
   * (only looked at when the store decides on a clock of this process).
   */
  private storeLeaseUntil: number;

  constructor(
    private readonly store: IdempotencyStore,
    private readonly key: string,
    private readonly token: number,
    private readonly leaseMs: number,
    private readonly intervalMs: number,
    private readonly clock: Clock,
    acquiredAt: number,
    /** On the elapsed timeline: no heartbeat renews the lease past it (a Lambda's end). */
    private readonly until?: number,
    /** What begin said the lease's end is, on the store's clock. */
    leaseUntil = Number.POSITIVE_INFINITY,
  ) {
    super();
    this.safeUntil = acquiredAt + leaseMs;
    this.storeLeaseUntil = leaseUntil;
  }

  /** Aborts with a {@link LeaseLostError} when the lease is lost. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.lostWith !== undefined) this.controller.abort(this.lostWith);
      else if (this.failed) this.controller.abort(RUN_SETTLED());
    }
    return this.controller.signal;
  }

  /** The error the lease was lost with (the signal's reason), once it is. */
  get lostReason(): LeaseLostError | undefined {
    return this.lostWith;
  }

  /** Why {@link ended} is true: the loss, or the run having settled. */
  get endReason(): LeaseLostError {
    return this.lostWith ?? RUN_SETTLED();
  }

  /** True once the lease is known to be lost. */
  get lost(): boolean {
    return this.lostWith !== undefined;
  }

  /**
   * Whether the lease is lost or has ended on the elapsed clock (marking it lost then): the
   * check to make before starting work that must not run twice, since the timer that would
   * notice the end may not have fired yet (a stalled event loop).
   */
  ended(): boolean {
    if (this.finished) return true;
    if (this.lostWith === undefined && this.overdue()) this.lose(new LeaseLostError(NOT_RENEWED));
    return this.lostWith !== undefined;
  }

  /**
   * Whether the lease has run out: on the elapsed clock, or, for a store that decides on a
   * clock of this process, on that clock as the store sees it (a forward step of the wall
   * clock ends it there, and another worker may take over).
   */
  private overdue(): boolean {
    if (elapsedOn(this.clock) >= this.safeUntil) return true;
    const storeClock = this.store.leaseClock;
    return storeClock !== undefined && storeClock.now() >= this.storeLeaseUntil;
  }

  /** Starts heartbeats (none when the interval is 0). */
  start(): void {
    if (this.intervalMs <= 0 || this.stopped) return;
    if (this.clock === systemClock) {
      firstBeats.add(this, this.nextBeatDelay());
    } else {
      this.schedule();
    }
  }

  /** Called by the shared ticker: the first beat is due in `ms`, on a timer of this lease's own. */
  armFirstBeat(ms: number): void {
    if (this.stopped) return;
    // Due now: a timer of 0 ms would run a millisecond later (Node's minimum).
    if (ms <= 0) void this.beat();
    else this.armBeat(ms);
  }

  /** Stops heartbeats and clears the timers. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.waitingFirstBeat) firstBeats.delete(this);
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
  }

  /**
   * The run has settled (its function returned or threw): heartbeats stop, and from now on
   * {@link ended} is true, so that a step the run's code still starts (a sibling of a failed
   * branch of `Promise.all`, say) does not run its work: the lease is released or the outcome
   * written next, and a retry may already hold the operation. After a failure (`failed`) the
   * signal aborts too, so that such code can stop early. Not a loss: {@link lostReason} stays
   * unset.
   */
  finish(failed: boolean): void {
    this.stop();
    this.finished = true;
    this.failed = failed;
    if (failed && this.lostWith === undefined) this.controller?.abort(RUN_SETTLED());
  }

  /** Marks the lease lost: aborts the signal (once) and stops heartbeats. */
  lose(error: LeaseLostError): void {
    this.stop();
    if (this.lostWith !== undefined) return;
    this.lostWith = error;
    this.controller?.abort(error);
  }

  /** The next beat, at the interval or at the end of the lease if that comes first. */
  private schedule(): void {
    if (!this.stopped) this.armBeat(this.nextBeatDelay());
  }

  /** Milliseconds to the next beat: the interval, or less when the lease ends sooner. */
  private nextBeatDelay(): number {
    // A beat earlier than the interval only renews the lease sooner.
    return Math.min(this.intervalMs, this.safeUntil - elapsedOn(this.clock), MAX_TIMER_MS);
  }

  private armBeat(delay: number): void {
    this.cancelTimer = this.clock.setTimer(delay, () => {
      this.cancelTimer = undefined;
      void this.beat();
    });
  }

  /** While a beat is in flight: presumes the lease lost at `safeUntil` if it has not answered. */
  private armDeadline(): void {
    const delay = Math.min(this.safeUntil - elapsedOn(this.clock), MAX_TIMER_MS);
    this.cancelDeadline = this.clock.setTimer(delay, () => {
      this.cancelDeadline = undefined;
      if (this.stopped) return;
      if (elapsedOn(this.clock) < this.safeUntil) {
        this.armDeadline();
        return;
      }
      this.lose(new LeaseLostError(NOT_RENEWED));
    });
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    const sentAt = elapsedOn(this.clock);
    if (this.overdue()) {
      this.lose(new LeaseLostError(NOT_RENEWED));
      return;
    }
    this.armDeadline();
    // Never past the end of the run: the lease then ends when the runtime would kill it.
    const leaseMs =
      this.until === undefined
        ? this.leaseMs
        : Math.min(this.leaseMs, Math.floor(this.until - sentAt));
    if (leaseMs < 1) return; // nothing to renew: the lease ends at safeUntil, as the run does
    try {
      const result = checkHeartbeat(
        this.store,
        await callStore(this.store, 'heartbeat', () =>
          this.store.heartbeat(this.key, this.token, leaseMs),
        ),
      );
      if (this.stopped) return;
      if (result.kind === 'lease_lost') {
        this.lose(
          new LeaseLostError('the lease was taken over by another worker (heartbeat refused)'),
        );
        return;
      }
      this.safeUntil = sentAt + leaseMs;
      this.storeLeaseUntil = result.leaseUntil;
    } catch (error) {
      if (this.stopped) return;
      if (elapsedOn(this.clock) >= this.safeUntil) {
        this.lose(new LeaseLostError(NOT_RENEWED, error));
        return;
      }
    }
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
    this.schedule();
  }
}
