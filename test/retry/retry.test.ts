import { unhandledDuring } from '../helpers/unhandled.js';
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  AbortedError,
  AttemptTimeoutError,
  DeadlineExceededError,
  IdempotencyInProgressError,
  InvalidArgumentError,
  RetryBudgetExhaustedError,
  RetryExhaustedError,
  isReprocessError,
} from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';
import { createRetryPolicy } from '../../src/retry/retry-policy.js';
import { retry } from '../../src/retry/retry.js';
import { createTokenBucketBudget } from '../../src/retry/token-bucket-budget.js';
import type {
  AttemptContext,
  GiveUpEvent,
  RetryEvent,
  SuccessEvent,
} from '../../src/retry/types.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { SteppedClock } from '../helpers/wall-step.js';
import { capture, codeError, drive, errorOf, statusError } from './helpers.js';

const START = 1_700_000_000_000;

/** fn that fails with `errors` in turn, then returns `value`; records start times. */
function flaky<T>(clock: FakeClock, errors: unknown[], value: T) {
  const starts: number[] = [];
  const contexts: AttemptContext[] = [];
  const fn = async (ctx: AttemptContext): Promise<T> => {
    starts.push(clock.now() - START);
    contexts.push(ctx);
    const next = errors[ctx.attempt - 1];
    if (next !== undefined) throw next;
    return value;
  };
  return { fn, starts, contexts };
}

const noJitter = { jitter: 'none', base: 100, cap: 10_000 } as const;

describe('retry', () => {
  it('returns the first success without delay and counts attempts from 1', async () => {
    const clock = new FakeClock(START);
    const { fn, contexts } = flaky(clock, [], 'ok');
    const result = await drive(clock, retry(fn, { clock }));
    expect(result).toEqual({ ok: true, value: 'ok' });
    expect(contexts).toHaveLength(1);
    expect(contexts[0]?.attempt).toBe(1);
    expect(contexts[0]?.deadline).toBe(Number.POSITIVE_INFINITY);
    expect(contexts[0]?.signal.aborted).toBe(false);
  });

  it('works with no options at all', async () => {
    await expect(retry(async () => 7)).resolves.toBe(7);
  });

  it('retries retryable errors on the exponential schedule until success', async () => {
    const clock = new FakeClock(START);
    const e = codeError('ECONNRESET');
    const { fn, starts } = flaky(clock, [e, e, e], 'done');
    const result = await drive(clock, retry(fn, { clock, maxAttempts: 5, ...noJitter }));
    expect(result).toEqual({ ok: true, value: 'done' });
    // delays 100, 200, 400
    expect(starts).toEqual([0, 100, 300, 700]);
  });

  it('uses linear and constant backoff when asked', async () => {
    const e = statusError(503);
    for (const [backoff, expected] of [
      ['linear', [0, 100, 300, 600]],
      ['constant', [0, 100, 200, 300]],
    ] as const) {
      const clock = new FakeClock(START);
      const { fn, starts } = flaky(clock, [e, e, e], 1);
      await drive(clock, retry(fn, { clock, maxAttempts: 4, backoff, ...noJitter }));
      expect(starts).toEqual(expected);
    }
  });

  it('draws jitter from the injected random source', async () => {
    const run = async (seed: number) => {
      const clock = new FakeClock(START);
      const e = codeError('ECONNRESET');
      const { fn, starts } = flaky(clock, [e, e, e], 1);
      await drive(clock, retry(fn, { clock, random: seededRandom(seed), maxAttempts: 4 }));
      return starts;
    };
    const a = await run(42);
    expect(await run(42)).toEqual(a);
    expect(await run(43)).not.toEqual(a);
    // full jitter: each delay within [0, 100 * 2^n]
    expect((a[1] ?? 0) - (a[0] ?? 0)).toBeLessThanOrEqual(100);
    expect((a[2] ?? 0) - (a[1] ?? 0)).toBeLessThanOrEqual(200);
  });

  it('maxAttempts counts attempts: 5 means 5 calls, then RetryExhaustedError', async () => {
    const clock = new FakeClock(START);
    const last = codeError('ECONNRESET', 'fifth');
    const e = codeError('ECONNRESET');
    const { fn, starts } = flaky(clock, [e, e, e, e, last], 'never');
    const error = errorOf(await drive(clock, retry(fn, { clock, maxAttempts: 5, ...noJitter })));
    expect(starts).toHaveLength(5);
    expect(error).toBeInstanceOf(RetryExhaustedError);
    expect((error as RetryExhaustedError).attempts).toBe(5);
    expect((error as RetryExhaustedError).cause).toBe(last);
    expect(isReprocessError(error, 'RETRY_EXHAUSTED')).toBe(true);
  });

  it('maxAttempts 1 makes one call', async () => {
    const clock = new FakeClock(START);
    const { fn, starts } = flaky(clock, [statusError(503)], 1);
    const error = errorOf(await drive(clock, retry(fn, { clock, maxAttempts: 1 })));
    expect(starts).toEqual([0]);
    expect(error).toBeInstanceOf(RetryExhaustedError);
  });

  it('rethrows a non-retryable error as it is, after one attempt', async () => {
    const clock = new FakeClock(START);
    const notFound = statusError(404);
    const { fn, starts } = flaky(clock, [notFound], 1);
    const error = errorOf(await drive(clock, retry(fn, { clock, maxAttempts: 5 })));
    expect(error).toBe(notFound);
    expect(starts).toEqual([0]);
  });

  it('treats a synchronous throw like a rejection', async () => {
    const clock = new FakeClock(START);
    let calls = 0;
    const fn = (() => {
      calls++;
      throw codeError('ECONNRESET');
    }) as unknown as () => Promise<number>;
    const error = errorOf(await drive(clock, retry(fn, { clock, maxAttempts: 2, ...noJitter })));
    expect(calls).toBe(2);
    expect(error).toBeInstanceOf(RetryExhaustedError);
  });

  it('composes a user classifier with the default', async () => {
    const clock = new FakeClock(START);
    class Flaky extends Error {}
    const { fn, starts } = flaky(clock, [new Flaky('x'), codeError('ECONNRESET')], 'ok');
    const classify = (e: unknown) => (e instanceof Flaky ? true : undefined);
    const result = await drive(clock, retry(fn, { clock, classify, ...noJitter }));
    expect(result).toEqual({ ok: true, value: 'ok' });
    expect(starts).toHaveLength(3);
  });

  describe('deadline', () => {
    it('never starts a sleep that ends past the deadline: gives up at once with the last error', async () => {
      const clock = new FakeClock(START);
      const e = codeError('ECONNRESET');
      const last = codeError('ECONNRESET', 'last');
      const { fn, starts } = flaky(clock, [e, e, last, e], 'never');
      const error = errorOf(
        await drive(clock, retry(fn, { clock, maxAttempts: 10, deadline: 500, ...noJitter })),
      );
      // attempts at 0, 100, 300; the next sleep (400) would end at 700 > 500
      expect(starts).toEqual([0, 100, 300]);
      expect(error).toBeInstanceOf(DeadlineExceededError);
      expect((error as DeadlineExceededError).cause).toBe(last);
      expect((error as DeadlineExceededError).attempts).toBe(3);
      // it gave up at the failure, without sleeping
      expect(clock.now() - START).toBe(300);
    });

    it('starts no attempt when a sleep ended past the deadline (a stalled process)', async () => {
      const clock = new FakeClock(START);
      const first = codeError('ECONNRESET', 'first');
      const { fn, starts } = flaky(clock, [first], 'late');
      const gaveUp: GiveUpEvent[] = [];
      const budget = createTokenBucketBudget({ capacity: 10, retryCost: 5 });
      const pending = retry(fn, {
        clock,
        deadline: 1000,
        maxAttempts: 5,
        budget,
        onGiveUp: (event) => gaveUp.push(event),
        ...noJitter,
        base: 900,
      }).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      // Attempt 1 fails at 0 and a sleep of 900 ms starts (it would end before 1000); the
      // process then stalls, and the timer fires at 1200.
      await clock.advance(0);
      expect(starts).toEqual([0]);
      clock.set(START + 1200);
      await clock.runAll();
      const error = errorOf(await pending);
      expect(starts).toEqual([0]);
      expect(error).toBeInstanceOf(DeadlineExceededError);
      expect((error as DeadlineExceededError).cause).toBe(first);
      expect((error as DeadlineExceededError).attempts).toBe(1);
      expect(gaveUp.map((e) => e.reason)).toEqual(['deadline']);
      // The retry it paid for before sleeping was never sent: paid back.
      expect(budget.remaining()).toBe(10);
    });

    it('takes a plain value from fn under a deadline too long for a timer', async () => {
      const clock = new FakeClock(START);
      const plain = (() => 42) as unknown as () => Promise<number>;
      const pending = retry(plain, { clock, deadline: '30d' });
      expect(pending).toBeInstanceOf(Promise);
      expect(await pending).toBe(42);
    });

    it('gives each attempt the absolute deadline', async () => {
      const clock = new FakeClock(START);
      const { fn, contexts } = flaky(clock, [], 1);
      await drive(clock, retry(fn, { clock, deadline: '2s' }));
      expect(contexts[0]?.deadline).toBe(START + 2000);
    });

    it('counts the deadline on the elapsed clock: a step of the wall clock neither stretches nor ends it', async () => {
      for (const step of [-3_600_000, 3_600_000]) {
        const clock = new SteppedClock(START);
        let attempts = 0;
        const deadlines: number[] = [];
        const fn = async (ctx: AttemptContext) => {
          attempts++;
          deadlines.push(ctx.deadline - clock.now());
          if (attempts === 1) clock.step = step;
          throw codeError('ECONNRESET');
        };
        const error = errorOf(
          await drive(
            clock,
            retry(fn, { clock, deadline: 1000, maxAttempts: 100, ...noJitter, cap: 100 }),
          ),
        );
        expect(error, `step ${step}`).toBeInstanceOf(DeadlineExceededError);
        // 100 ms apart within one second, whichever way the wall clock jumped.
        expect(clock.elapsed() - START, `step ${step}`).toBe(900);
        expect(attempts, `step ${step}`).toBe(10);
        // Each attempt is told the time left on the wall clock as it reads then.
        expect(deadlines.slice(0, 3), `step ${step}`).toEqual([1000, 900, 800]);
      }
    });

    it('bounds a slow attempt by the time left before the deadline', async () => {
      const clock = new FakeClock(START);
      let signal: AbortSignal | undefined;
      const fn = (ctx: AttemptContext) => {
        signal = ctx.signal;
        return new Promise<number>(() => {});
      };
      const error = errorOf(
        await drive(clock, retry(fn, { clock, deadline: 300, attemptTimeout: 1000 })),
      );
      expect(clock.now() - START).toBe(300);
      expect(error).toBeInstanceOf(DeadlineExceededError);
      expect((error as DeadlineExceededError).cause).toBeInstanceOf(AttemptTimeoutError);
      expect(signal?.aborted).toBe(true);
    });
  });

  describe('attempt timeout', () => {
    it('aborts the attempt signal with AttemptTimeoutError and retries', async () => {
      const clock = new FakeClock(START);
      const signals: AbortSignal[] = [];
      const fn = (ctx: AttemptContext) => {
        signals.push(ctx.signal);
        if (ctx.attempt === 3) return Promise.resolve('third time');
        return new Promise<string>(() => {});
      };
      const result = await drive(
        clock,
        retry(fn, { clock, attemptTimeout: 250, maxAttempts: 3, ...noJitter }),
      );
      expect(result).toEqual({ ok: true, value: 'third time' });
      expect(signals[0]?.aborted).toBe(true);
      expect(signals[0]?.reason).toBeInstanceOf(AttemptTimeoutError);
      expect(signals[2]?.aborted).toBe(false);
      // 250 timeout + 100 sleep + 250 timeout + 200 sleep
      expect(clock.now() - START).toBe(800);
    });

    it('settles at the timeout even when fn ignores its signal; exhaustion keeps the timeout as cause', async () => {
      const clock = new FakeClock(START);
      const fn = () => new Promise<number>(() => {});
      const error = errorOf(
        await drive(clock, retry(fn, { clock, attemptTimeout: '1s', maxAttempts: 2, ...noJitter })),
      );
      expect(error).toBeInstanceOf(RetryExhaustedError);
      expect((error as RetryExhaustedError).cause).toBeInstanceOf(AttemptTimeoutError);
      expect(clock.now() - START).toBe(2100);
    });

    it('ignores a late result of a timed-out attempt', async () => {
      const clock = new FakeClock(START);
      const fn = (ctx: AttemptContext) =>
        new Promise<string>((resolve) => {
          clock.setTimer(ctx.attempt === 1 ? 500 : 10, () => resolve(`attempt ${ctx.attempt}`));
        });
      const result = await drive(
        clock,
        retry(fn, { clock, attemptTimeout: 100, maxAttempts: 3, ...noJitter }),
      );
      expect(result).toEqual({ ok: true, value: 'attempt 2' });
    });
  });

  describe('caller signal', () => {
    it('an abort during the backoff sleep ends it at once, with no further attempt', async () => {
      const clock = new FakeClock(START);
      const controller = new AbortController();
      const e = codeError('ECONNRESET');
      const { fn, starts } = flaky(clock, [e, e, e], 1);
      const settled = capture(
        retry(fn, { clock, signal: controller.signal, maxAttempts: 5, ...noJitter, base: 10_000 }),
      );
      await clock.advance(1_000); // inside the first 10 s sleep
      controller.abort(new Error('user went away'));
      const error = errorOf(await settled);
      expect(error).toBeInstanceOf(AbortedError);
      expect(starts).toEqual([0]);
      expect(clock.now() - START).toBe(1_000);
      expect(clock.pending).toBe(0);
    });

    it('an abort during an attempt settles it at once and aborts its signal', async () => {
      const clock = new FakeClock(START);
      const controller = new AbortController();
      let attemptSignal: AbortSignal | undefined;
      let calls = 0;
      const fn = (ctx: AttemptContext) => {
        calls++;
        attemptSignal = ctx.signal;
        return new Promise<number>(() => {});
      };
      const settled = capture(
        retry(fn, { clock, signal: controller.signal, attemptTimeout: 5000 }),
      );
      await clock.advance(100);
      controller.abort('stop');
      const error = errorOf(await settled);
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as AbortedError).cause).toBe('stop');
      expect(attemptSignal?.aborted).toBe(true);
      expect(calls).toBe(1);
    });

    it('hands the caller signal to an untimed attempt', async () => {
      const clock = new FakeClock(START);
      const controller = new AbortController();
      const { fn, contexts } = flaky(clock, [], 1);
      await drive(clock, retry(fn, { clock, signal: controller.signal }));
      expect(contexts[0]?.signal).toBe(controller.signal);
    });

    it('an already aborted signal makes no call', async () => {
      const clock = new FakeClock(START);
      let calls = 0;
      const error = errorOf(
        await drive(
          clock,
          retry(
            async () => {
              calls++;
            },
            { clock, signal: AbortSignal.abort() },
          ),
        ),
      );
      expect(error).toBeInstanceOf(AbortedError);
      expect(calls).toBe(0);
    });
  });

  describe('Retry-After', () => {
    it('a hint in seconds sets the next delay', async () => {
      const clock = new FakeClock(START);
      const throttled = statusError(429, { headers: { 'retry-after': '3' } });
      const { fn, starts } = flaky(clock, [throttled], 'ok');
      await drive(clock, retry(fn, { clock, ...noJitter }));
      expect(starts).toEqual([0, 3000]);
    });

    it('an HTTP date sets the next delay relative to the clock', async () => {
      const clock = new FakeClock(START);
      const at = new Date(START + 5000).toUTCString();
      const unavailable = statusError(503, { headers: { 'Retry-After': at } });
      const { fn, starts } = flaky(clock, [unavailable], 'ok');
      await drive(clock, retry(fn, { clock, ...noJitter }));
      expect(starts).toEqual([0, 5000]);
    });

    it('is bounded by cap', async () => {
      const clock = new FakeClock(START);
      const throttled = statusError(429, { headers: { 'retry-after': '120' } });
      const { fn, starts } = flaky(clock, [throttled], 'ok');
      await drive(clock, retry(fn, { clock, ...noJitter, cap: '2s' }));
      expect(starts).toEqual([0, 2000]);
    });

    it('a hint past the deadline gives up at once', async () => {
      const clock = new FakeClock(START);
      const throttled = statusError(429, { headers: { 'retry-after': '10' } });
      const { fn, starts } = flaky(clock, [throttled], 'ok');
      const error = errorOf(await drive(clock, retry(fn, { clock, ...noJitter, deadline: '5s' })));
      expect(error).toBeInstanceOf(DeadlineExceededError);
      expect(starts).toEqual([0]);
    });

    it('retries IdempotencyInProgressError after its hint', async () => {
      const clock = new FakeClock(START);
      const { fn, starts } = flaky(clock, [new IdempotencyInProgressError(1500)], 'ok');
      await drive(clock, retry(fn, { clock, ...noJitter }));
      expect(starts).toEqual([0, 1500]);
    });

    it('reads the hint from a result rejected by retryOnResult', async () => {
      const clock = new FakeClock(START);
      const responses = [
        new Response('busy', { status: 503, headers: { 'retry-after': '2' } }),
        new Response('ok', { status: 200 }),
      ];
      const starts: number[] = [];
      const fn = async (ctx: AttemptContext) => {
        starts.push(clock.now() - START);
        return responses[ctx.attempt - 1] as Response;
      };
      const result = await drive(
        clock,
        retry(fn, { clock, ...noJitter, retryOnResult: (r) => r.status >= 500 }),
      );
      expect(result.ok && result.value.status).toBe(200);
      expect(starts).toEqual([0, 2000]);
    });
  });

  describe('retryOnResult', () => {
    it('retries while the predicate says so and returns the last result when attempts run out', async () => {
      const clock = new FakeClock(START);
      let calls = 0;
      const fn = async () => ({ status: 503, call: ++calls });
      const result = await drive(
        clock,
        retry(fn, { clock, maxAttempts: 3, ...noJitter, retryOnResult: (r) => r.status === 503 }),
      );
      expect(result).toEqual({ ok: true, value: { status: 503, call: 3 } });
    });
  });

  describe('budget', () => {
    it('never blocks the first attempt, and gives up at once when it cannot pay', async () => {
      const clock = new FakeClock(START);
      const budget = createTokenBucketBudget({ capacity: 12, retryCost: 5 });
      const e = codeError('ECONNRESET');
      const { fn, starts } = flaky(clock, [e, e, e, e, e], 'never');
      const error = errorOf(
        await drive(clock, retry(fn, { clock, budget, maxAttempts: 10, ...noJitter })),
      );
      // 12 tokens pay two retries of 5
      expect(starts).toEqual([0, 100, 300]);
      expect(error).toBeInstanceOf(RetryBudgetExhaustedError);
      expect((error as RetryBudgetExhaustedError).attempts).toBe(3);
      expect((error as RetryBudgetExhaustedError).cause).toBe(e);
      expect(budget.tokens).toBe(2);

      const second = flaky(clock, [], 'fine');
      const ok = await drive(clock, retry(second.fn, { clock, budget }));
      expect(ok).toEqual({ ok: true, value: 'fine' });
      expect(budget.tokens).toBe(3);
    });

    it('charges more for a retry after a timeout', async () => {
      const clock = new FakeClock(START);
      const budget = createTokenBucketBudget({ capacity: 100 });
      const fn = (ctx: AttemptContext) =>
        ctx.attempt === 1 ? new Promise<number>(() => {}) : Promise.resolve(1);
      await drive(clock, retry(fn, { clock, budget, attemptTimeout: 50, ...noJitter }));
      expect(budget.tokens).toBe(91); // 100 - 10 + 1
    });
  });

  describe('events', () => {
    it('calls onRetry, onGiveUp and onSuccess hooks from the options', async () => {
      const clock = new FakeClock(START);
      const retries: RetryEvent[] = [];
      const successes: SuccessEvent[] = [];
      const e = codeError('ECONNRESET');
      const { fn } = flaky(clock, [e, e], 'ok');
      await drive(
        clock,
        retry(fn, {
          clock,
          ...noJitter,
          onRetry: (ev) => retries.push(ev),
          onSuccess: (ev) => successes.push(ev),
        }),
      );
      expect(retries).toEqual([
        { attempt: 1, error: e, delay: 100 },
        { attempt: 2, error: e, delay: 200 },
      ]);
      expect(successes).toEqual([{ attempts: 3, elapsed: 300 }]);

      const giveUps: GiveUpEvent[] = [];
      const notFound = statusError(404);
      const failing = flaky(clock, [notFound], 'x');
      await drive(clock, retry(failing.fn, { clock, onGiveUp: (ev) => giveUps.push(ev) }));
      expect(giveUps).toEqual([{ attempts: 1, error: notFound, reason: 'not_retryable' }]);
    });

    it('reports each give-up reason', async () => {
      const reasons: string[] = [];
      const onGiveUp = (ev: GiveUpEvent) => reasons.push(ev.reason);
      const e = codeError('ECONNRESET');
      const always = async () => {
        throw e;
      };
      let clock = new FakeClock(START);
      await drive(clock, retry(always, { clock, maxAttempts: 2, onGiveUp, ...noJitter }));
      clock = new FakeClock(START);
      await drive(clock, retry(always, { clock, deadline: 150, onGiveUp, ...noJitter }));
      clock = new FakeClock(START);
      const budget = createTokenBucketBudget({ capacity: 0 });
      await drive(clock, retry(always, { clock, budget, onGiveUp, ...noJitter }));
      clock = new FakeClock(START);
      await drive(clock, retry(always, { clock, signal: AbortSignal.abort(), onGiveUp }));
      expect(reasons).toEqual(['attempts', 'deadline', 'budget', 'aborted']);
    });

    it('policy listeners fire until disposed, and a throwing listener changes nothing', async () => {
      const clock = new FakeClock(START);
      const policy = createRetryPolicy({ clock, ...noJitter, maxAttempts: 3 });
      const seen: string[] = [];
      const stopRetry = policy.onRetry((ev) => seen.push(`retry ${ev.attempt}`));
      const stopSuccess = policy.onSuccess((ev) => seen.push(`success ${ev.attempts}`));
      const stopGiveUp = policy.onGiveUp((ev) => seen.push(`giveup ${ev.reason}`));
      policy.onSuccess(() => {
        throw new Error('broken logger');
      });
      const e = codeError('ECONNRESET');

      const first = flaky(clock, [e], 'a');
      expect(await drive(clock, policy.execute(first.fn))).toEqual({ ok: true, value: 'a' });
      expect(seen).toEqual(['retry 1', 'success 2']);

      stopRetry();
      stopSuccess();
      stopRetry(); // twice is harmless
      const second = flaky(clock, [e, e, e], 'b');
      await drive(clock, policy.execute(second.fn));
      expect(seen).toEqual(['retry 1', 'success 2', 'giveup attempts']);

      stopGiveUp();
      const third = flaky(clock, [e, e, e], 'c');
      await drive(clock, policy.execute(third.fn));
      expect(seen).toHaveLength(3);
    });

    it('an async hook or listener that rejects changes nothing and leaves no unhandled rejection', async () => {
      const clock = new FakeClock(START);
      // An async listener, as users write them (typed as the void listener it is passed as).
      const failing = (() => Promise.reject(new Error('exporter down'))) as () => void;
      const policy = createRetryPolicy({
        clock,
        ...noJitter,
        maxAttempts: 2,
        onRetry: failing,
        onSuccess: failing,
        onGiveUp: failing,
      });
      policy.onRetry(failing);
      policy.onSuccess(failing);
      policy.onGiveUp(failing);
      const results: unknown[] = [];
      const unhandled = await unhandledDuring(async () => {
        const e = codeError('ECONNRESET');
        results.push(await drive(clock, policy.execute(flaky(clock, [e], 'a').fn)));
        results.push(errorOf(await drive(clock, policy.execute(flaky(clock, [e, e], 'b').fn))));
      });
      expect(results[0]).toEqual({ ok: true, value: 'a' });
      expect(results[1]).toMatchObject({ code: 'RETRY_EXHAUSTED' });
      expect(unhandled).toEqual([]);
    });

    it('execute takes a per-call signal', async () => {
      const clock = new FakeClock(START);
      const policy = createRetryPolicy({ clock, maxAttempts: 3, ...noJitter });
      const error = errorOf(
        await drive(
          clock,
          policy.execute(async () => 1, AbortSignal.abort()),
        ),
      );
      expect(error).toBeInstanceOf(AbortedError);
    });

    it("aborts a call on the policy's signal or the call's, and leaves nothing on the policy's signal once calls end", async () => {
      const clock = new FakeClock(START);
      const shutdown = new AbortController();
      const policy = createRetryPolicy({
        clock,
        maxAttempts: 3,
        signal: shutdown.signal,
        ...noJitter,
      });
      // A long-lived signal (a process-wide shutdown) under many calls, each with its own.
      for (let i = 0; i < 200; i++) {
        const call = new AbortController();
        expect(await policy.execute(async () => i, call.signal)).toBe(i);
        expect(getEventListeners(call.signal, 'abort')).toHaveLength(0);
      }
      expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
      // Nor does Node keep each call's combined signal with it (AbortSignal.any would).
      const dependants = Object.getOwnPropertySymbols(shutdown.signal).find(
        (symbol) => symbol.description === 'kDependantSignals',
      );
      const held =
        dependants && (shutdown.signal as unknown as Record<symbol, Set<unknown>>)[dependants];
      expect(held?.size ?? 0).toBe(0);

      const byCall = new AbortController();
      const callAborted = policy
        .execute(() => new Promise<never>(() => {}), byCall.signal)
        .catch((e: unknown) => e);
      byCall.abort(new Error('client went away'));
      expect(await callAborted).toBeInstanceOf(AbortedError);
      const byPolicy = policy
        .execute(() => new Promise<never>(() => {}), new AbortController().signal)
        .catch((e: unknown) => e);
      shutdown.abort(new Error('shutting down'));
      expect(await byPolicy).toBeInstanceOf(AbortedError);
      // Already aborted: the call does not start.
      let started = false;
      const late = await policy
        .execute(async () => {
          started = true;
        }, new AbortController().signal)
        .catch((e: unknown) => e);
      expect(late).toBeInstanceOf(AbortedError);
      expect(started).toBe(false);
    });
  });

  describe('bad options', () => {
    it.each([
      [{ maxAttempts: 0 }, /maxAttempts/],
      [{ maxAttempts: 2.5 }, /maxAttempts/],
      [{ jitter: 'sideways' }, /jitter.*none, full, equal, decorrelated/],
      [{ backoff: 'fibonacci' }, /backoff/],
      [{ base: '5 parsecs' }, /base/],
      [{ cap: -1 }, /cap/],
      [{ factor: 0 }, /factor/],
      [{ deadline: 0 }, /deadline/],
      [{ attemptTimeout: 'soon' }, /attemptTimeout/],
      [{ retryOnResult: 'yes' }, /retryOnResult/],
    ])('%o is rejected with InvalidArgumentError naming the field', async (options, pattern) => {
      const error = await retry(async () => 1, options as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(pattern);
    });

    it('rejects a fn that is not a function', async () => {
      await expect(retry('nope' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    });

    it('createRetryPolicy throws at once on bad options', () => {
      expect(() => createRetryPolicy({ maxAttempts: -1 })).toThrow(InvalidArgumentError);
    });
  });
});
