import { afterEach, describe, expect, it, vi } from 'vitest';
import { sleep, systemClock } from '../../src/clock.js';
import {
  AbortedError,
  DeadlineExceededError,
  InvalidArgumentError,
  NonRetryableError,
  RetryBudgetExhaustedError,
} from '../../src/errors.js';
import { computeDelay } from '../../src/retry/compute-delay.js';
import { isNonRetryableError } from '../../src/retry/guards.js';
import { profiles } from '../../src/retry/profiles.js';
import { createRatioBudget } from '../../src/retry/ratio-budget.js';
import { createRetryPolicy } from '../../src/retry/retry-policy.js';
import { retry } from '../../src/retry/retry.js';
import { createTokenBucketBudget } from '../../src/retry/token-bucket-budget.js';
import type { GiveUpEvent, RetryBudget } from '../../src/retry/types.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { capture, codeError, drive, errorOf } from './helpers.js';

const START = 1_700_000_000_000;
const DAY = 86_400_000;

/*
 * Edges of the retry loop found in review: budgets paid back on abort, a classifier or budget
 * that throws, malformed budgets and option names, shared resolutions, long deadlines and
 * timers, subclasses of NonRetryableError, and a policy passed to retry().
 */

describe('retry: budgets and aborts', () => {
  it('pays back the retry when the caller aborts during the backoff sleep (token bucket and ratio)', async () => {
    for (const kind of ['bucket', 'ratio'] as const) {
      const clock = new FakeClock(START);
      const budget = kind === 'bucket' ? createTokenBucketBudget() : createRatioBudget({ clock });
      const before = budget.remaining();
      const controller = new AbortController();
      const outcome = capture(
        retry(
          async () => {
            throw codeError('ECONNRESET');
          },
          { clock, budget, signal: controller.signal, base: 1000, jitter: 'none' },
        ),
      );
      await clock.advance(10);
      controller.abort(new Error('caller gone'));
      expect(errorOf(await outcome)).toBeInstanceOf(AbortedError);
      expect(budget.remaining(), kind).toBe(before);
    }
  });

  it('a classifier that throws ends the call with the attempt failure, once, with the give-up event', async () => {
    const clock = new FakeClock(START);
    const events: GiveUpEvent[] = [];
    const failure = codeError('ECONNRESET', 'socket reset');
    let calls = 0;
    const settled = await drive(
      clock,
      retry(
        async () => {
          calls++;
          throw failure;
        },
        {
          clock,
          classify: () => {
            throw new Error('classifier bug');
          },
          onGiveUp: (event) => events.push(event),
        },
      ),
    );
    expect(errorOf(settled)).toBe(failure);
    expect(calls).toBe(1);
    expect(events).toEqual([{ attempts: 1, error: failure, reason: 'not_retryable' }]);
  });

  it('a budget that throws pays for nothing: RetryBudgetExhaustedError with the failure as cause', async () => {
    const clock = new FakeClock(START);
    const events: GiveUpEvent[] = [];
    const failure = codeError('ECONNRESET');
    const budget: RetryBudget = {
      onRequest() {},
      tryAcquireRetry() {
        throw new Error('budget store down');
      },
      onSuccess() {},
      remaining: () => 0,
    };
    const settled = await drive(
      clock,
      retry(
        async () => {
          throw failure;
        },
        { clock, budget, onGiveUp: (event) => events.push(event) },
      ),
    );
    const error = errorOf(settled);
    expect(error).toBeInstanceOf(RetryBudgetExhaustedError);
    expect((error as Error).cause).toBe(failure);
    expect(events.map((e) => e.reason)).toEqual(['budget']);
  });

  it('refuses a malformed budget with InvalidArgumentError, as a rejection', async () => {
    const bad = [
      null,
      7,
      { tryAcquireRetry: () => true },
      { ...createTokenBucketBudget(), refundRetry: 1 },
    ];
    for (const budget of bad) {
      let pending: Promise<unknown> | undefined;
      expect(() => {
        pending = retry(async () => 1, { budget: budget as unknown as RetryBudget });
      }).not.toThrow();
      await expect(pending).rejects.toThrow(InvalidArgumentError);
    }
  });
});

describe('retry: options', () => {
  it('a resolution is frozen: one policy cannot change profiles.sync for everybody', async () => {
    const policy = createRetryPolicy(profiles.sync);
    expect(() => {
      (policy.options.backoff as { base: number }).base = 10_000;
    }).toThrow(TypeError);
    expect(() => {
      (policy.options as { maxAttempts: number }).maxAttempts = 1;
    }).toThrow(TypeError);
    expect(createRetryPolicy(profiles.sync).options.maxAttempts).toBe(policy.options.maxAttempts);
  });

  it('refuses an unknown option name', async () => {
    await expect(
      retry(async () => 1, { maxAttempt: 1 } as unknown as { maxAttempts: number }),
    ).rejects.toThrow(/unknown retry option "maxAttempt"/);
    expect(() => createRetryPolicy({ deadLine: '1s' } as never)).toThrow(InvalidArgumentError);
  });

  it('retry(fn, policy) runs under the policy: its attempts, budget and listeners', async () => {
    const clock = new FakeClock(START);
    const budget = createTokenBucketBudget();
    const policy = createRetryPolicy({ maxAttempts: 6, base: 1, jitter: 'none', clock, budget });
    const retries: number[] = [];
    policy.onRetry(({ attempt }) => retries.push(attempt));
    let calls = 0;
    const settled = await drive(
      clock,
      retry(async () => {
        calls++;
        throw codeError('ECONNRESET');
      }, policy),
    );
    errorOf(settled);
    expect(calls).toBe(6);
    expect(retries).toEqual([1, 2, 3, 4, 5]);
    expect(budget.remaining()).toBeLessThan(500);
  });

  it('computeDelay refuses a random that is not a function', () => {
    expect(() => computeDelay(profiles.async, 2, 42 as never)).toThrow(InvalidArgumentError);
  });

  it('a subclass of NonRetryableError with a code of its own is still non-retryable', async () => {
    class CardDeclined extends NonRetryableError {
      constructor() {
        super('declined', { code: 'CARD_DECLINED' });
      }
    }
    const error = new CardDeclined();
    expect(isNonRetryableError(error)).toBe(true);
    let calls = 0;
    await expect(
      retry(async () => {
        calls++;
        throw error;
      }),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
  });
});

describe('long waits', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('cuts an attempt at a deadline past 24.8 days', async () => {
    const clock = new FakeClock(START);
    const outcome = capture(retry(() => new Promise<never>(() => {}), { clock, deadline: '30d' }));
    await clock.advance(29 * DAY);
    let settled = false;
    void outcome.then(() => {
      settled = true;
    });
    await Promise.resolve();
    expect(settled).toBe(false);
    await clock.advance(1 * DAY + 1);
    expect(errorOf(await outcome)).toBeInstanceOf(DeadlineExceededError);
  });

  it("a caller's own clock on setTimeout is never asked for a timer past its limit", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const asked: number[] = [];
    const ownClock = {
      now: () => Date.now(),
      setTimer(ms: number, callback: () => void) {
        asked.push(ms);
        const handle = setTimeout(callback, Math.max(0, ms));
        return () => clearTimeout(handle);
      },
    };
    const outcome = capture(
      retry(
        () =>
          new Promise<string>((resolve) => {
            setTimeout(() => resolve('done'), 50);
          }),
        { clock: ownClock, deadline: '30d', maxAttempts: 1 },
      ),
    );
    await vi.advanceTimersByTimeAsync(50);
    expect(await outcome).toEqual({ ok: true, value: 'done' });
    expect(Math.max(...asked)).toBeLessThanOrEqual(2 ** 31 - 1);
    // And the chained timer still cuts an attempt at the deadline.
    const hung = capture(
      retry(() => new Promise<never>(() => {}), { clock: ownClock, deadline: '30d' }),
    );
    await vi.advanceTimersByTimeAsync(30 * DAY);
    expect(errorOf(await hung)).toBeInstanceOf(DeadlineExceededError);
  });

  it('the system clock waits past setTimeout limit instead of firing at once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    let woke = false;
    const waiting = sleep(systemClock, 30 * DAY).then(() => {
      woke = true;
    });
    await vi.advanceTimersByTimeAsync(2 ** 31);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(29 * DAY - 2 ** 31);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(1 * DAY);
    await waiting;
    expect(woke).toBe(true);
    // Cancelled in its second stretch: never fires.
    let fired = false;
    const cancel = systemClock.setTimer(40 * DAY, () => {
      fired = true;
    });
    await vi.advanceTimersByTimeAsync(30 * DAY);
    cancel();
    await vi.advanceTimersByTimeAsync(20 * DAY);
    expect(fired).toBe(false);
  });
});
