import type { Clock } from '../clock.js';
import { LeaseLostError } from '../errors.js';
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
 * succeeded for a whole lease (on this process's clock), the lease is presumed lost and the
 * signal aborts, since another worker may have taken over by now. A deadline timer makes
 * that happen even when a beat never answers (a stalled connection).
 */
/**
 * The longest delay a timer takes: Node runs a `setTimeout` longer than 2^31 - 1 ms after
 * 1 ms, which would turn a long lease into heartbeats in a loop or an instant loss.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export class LeaseKeeper {
  // Created on first use: most runs never look at the signal, and the hot path shows it.
  private controller: AbortController | undefined;
  private lostWith: LeaseLostError | undefined;
  private cancelTimer: (() => void) | undefined;
  private cancelDeadline: (() => void) | undefined;
  private stopped = false;
  /** Local time before which the lease is surely still ours. */
  private safeUntil: number;

  constructor(
    private readonly store: IdempotencyStore,
    private readonly key: string,
    private readonly token: number,
    private readonly leaseMs: number,
    private readonly intervalMs: number,
    private readonly clock: Clock,
    acquiredAt: number,
  ) {
    this.safeUntil = acquiredAt + leaseMs;
  }

  /** Aborts with a {@link LeaseLostError} when the lease is lost. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.lostWith !== undefined) this.controller.abort(this.lostWith);
    }
    return this.controller.signal;
  }

  /** True once the lease is known to be lost. */
  get lost(): boolean {
    return this.lostWith !== undefined;
  }

  /** Starts heartbeats (none when the interval is 0). */
  start(): void {
    if (this.intervalMs > 0) {
      this.schedule();
      this.armDeadline();
    }
  }

  /** Stops heartbeats and clears the timers. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
  }

  /** Marks the lease lost: aborts the signal (once) and stops heartbeats. */
  lose(error: LeaseLostError): void {
    this.stop();
    if (this.lostWith !== undefined) return;
    this.lostWith = error;
    this.controller?.abort(error);
  }

  /** (Re)starts the timer that presumes the lease lost at `safeUntil`, whatever beats are doing. */
  private armDeadline(): void {
    this.cancelDeadline?.();
    const delay = Math.min(this.safeUntil - this.clock.now(), MAX_TIMER_MS);
    this.cancelDeadline = this.clock.setTimer(delay, () => {
      this.cancelDeadline = undefined;
      if (this.stopped) return;
      if (this.clock.now() < this.safeUntil) {
        this.armDeadline();
        return;
      }
      this.lose(
        new LeaseLostError(
          'the lease could not be renewed before it ended; another worker may hold it now',
        ),
      );
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    // A beat earlier than the interval only renews the lease sooner.
    this.cancelTimer = this.clock.setTimer(Math.min(this.intervalMs, MAX_TIMER_MS), () => {
      this.cancelTimer = undefined;
      void this.beat();
    });
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    const sentAt = this.clock.now();
    try {
      const result = checkHeartbeat(
        this.store,
        await callStore(this.store, 'heartbeat', () =>
          this.store.heartbeat(this.key, this.token, this.leaseMs),
        ),
      );
      if (this.stopped) return;
      if (result.kind === 'lease_lost') {
        this.lose(
          new LeaseLostError('the lease was taken over by another worker (heartbeat refused)'),
        );
        return;
      }
      this.safeUntil = sentAt + this.leaseMs;
      this.armDeadline();
    } catch (error) {
      if (this.stopped) return;
      if (this.clock.now() >= this.safeUntil) {
        this.lose(
          new LeaseLostError(
            'the lease could not be renewed before it ended; another worker may hold it now',
            error,
          ),
        );
        return;
      }
    }
    this.schedule();
  }
}
