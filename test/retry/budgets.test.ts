import { unhandledDuring } from '../helpers/unhandled.js';
import { describe, expect, it } from 'vitest';
import { AbortedError, AttemptTimeoutError, InvalidArgumentError } from '../../src/errors.js';
import { createRatioBudget } from '../../src/retry/ratio-budget.js';
import { retry } from '../../src/retry/retry.js';
import type { RetryBudget } from '../../src/retry/types.js';
import { createTokenBucketBudget } from '../../src/retry/token-bucket-budget.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { codeError } from './helpers.js';

describe('createTokenBucketBudget', () => {
  it('starts full with the AWS standard-mode numbers', () => {
    const budget = createTokenBucketBudget();
    expect(budget.capacity).toBe(500);
    expect(budget.remaining()).toBe(500);
    expect(budget.tryAcquireRetry(codeError('ECONNRESET'))).toBe(true);
    expect(budget.tokens).toBe(495);
    expect(budget.tryAcquireRetry(new AttemptTimeoutError(10))).toBe(true);
    expect(budget.tokens).toBe(485);
    budget.onSuccess();
    expect(budget.tokens).toBe(486);
  });

  it('pays exactly capacity / retryCost retries, then refuses without going negative', () => {
    const budget = createTokenBucketBudget();
    let paid = 0;
    while (budget.tryAcquireRetry(codeError('ECONNRESET'))) paid++;
    expect(paid).toBe(100);
    expect(budget.tokens).toBe(0);
    expect(budget.tryAcquireRetry(codeError('ECONNRESET'))).toBe(false);
    expect(budget.tokens).toBe(0);
  });

  it('refuses a timeout retry it cannot pay even when a normal one would fit', () => {
    const budget = createTokenBucketBudget({ capacity: 7 });
    expect(budget.tryAcquireRetry(codeError('ETIMEDOUT'))).toBe(false);
    expect(budget.tokens).toBe(7);
    expect(budget.tryAcquireRetry(codeError('ECONNRESET'))).toBe(true);
    expect(budget.tokens).toBe(2);
  });

  it('gives back what a retry cost when it is not sent: 10 for a timeout, 5 otherwise', () => {
    const budget = createTokenBucketBudget();
    const timeout = new AttemptTimeoutError(10);
    expect(budget.tryAcquireRetry(timeout)).toBe(true);
    expect(budget.tryAcquireRetry(codeError('ECONNRESET'))).toBe(true);
    expect(budget.tokens).toBe(485);
    budget.refundRetry?.(timeout);
    expect(budget.tokens).toBe(495);
    budget.refundRetry?.(codeError('ECONNRESET'));
    expect(budget.tokens).toBe(500);
    budget.refundRetry?.(timeout);
    expect(budget.tokens).toBe(500);
  });

  it('a timeout retry paid for and then aborted during its backoff gives back all 10 tokens', async () => {
    const clock = new FakeClock(0);
    const budget = createTokenBucketBudget();
    const controller = new AbortController();
    const outcome = retry(() => Promise.reject(new AttemptTimeoutError(10)), {
      clock,
      budget,
      signal: controller.signal,
      maxAttempts: 3,
      backoff: 'constant',
      base: 1000,
      cap: 1000,
      jitter: 'none',
    }).catch((e: unknown) => e);
    // The first attempt failed, the retry was paid for, its backoff started.
    for (let i = 0; i < 50 && clock.pending === 0; i++) await Promise.resolve();
    expect(budget.tokens).toBe(490);
    controller.abort();
    await outcome;
    expect(budget.tokens).toBe(500);
  });

  it('a budget that throws (its store down) changes nothing for the call, on any of its methods', async () => {
    const down = () => {
      throw new Error('budget store down');
    };
    const budgetWith = (broken: string): RetryBudget =>
      ({
        onRequest: () => {},
        tryAcquireRetry: () => true,
        onSuccess: () => {},
        refundRetry: () => {},
        remaining: () => 1,
        [broken]: down,
      }) as RetryBudget;
    for (const broken of ['onRequest', 'onSuccess', 'refundRetry']) {
      // A success stays a success: the charge went through, a rejection would invite another.
      let charges = 0;
      const outcome = retry(
        async () => {
          charges++;
          return 'receipt';
        },
        { budget: budgetWith(broken), maxAttempts: 2, jitter: 'none', base: 1 },
      );
      expect(await outcome, broken).toBe('receipt');
      expect(charges).toBe(1);
    }
    // An async budget (kept in a store) whose calls reject: no unhandled rejection either.
    const rejecting = (() => Promise.reject(new Error('budget store down'))) as () => void;
    const unhandled = await unhandledDuring(async () => {
      const outcome = await retry(async () => 'receipt', {
        budget: { ...budgetWith('onRequest'), onRequest: rejecting, onSuccess: rejecting },
        maxAttempts: 2,
      });
      expect(outcome).toBe('receipt');
    });
    expect(unhandled).toEqual([]);
    // A refund that throws while the caller aborts during the backoff: still the abort.
    const clock = new FakeClock(0);
    const controller = new AbortController();
    const aborted = retry(() => Promise.reject(codeError('ECONNRESET')), {
      clock,
      budget: budgetWith('refundRetry'),
      signal: controller.signal,
      maxAttempts: 3,
      backoff: 'constant',
      base: 1000,
      jitter: 'none',
    }).catch((e: unknown) => e);
    for (let i = 0; i < 50 && clock.pending === 0; i++) await Promise.resolve();
    controller.abort(new Error('caller gave up'));
    expect(await aborted).toBeInstanceOf(AbortedError);
  });

  it('refunds successes up to capacity only', () => {
    const budget = createTokenBucketBudget({ capacity: 10, successRefund: 3 });
    budget.onSuccess();
    expect(budget.tokens).toBe(10);
    budget.tryAcquireRetry(undefined);
    budget.onSuccess();
    expect(budget.tokens).toBe(8);
  });

  it('validates its options', () => {
    expect(() => createTokenBucketBudget({ capacity: -1 })).toThrow(InvalidArgumentError);
    expect(() => createTokenBucketBudget({ retryCost: 0 })).toThrow(/retryCost/);
    expect(() => createTokenBucketBudget({ timeoutRetryCost: Number.NaN })).toThrow(
      /timeoutRetryCost/,
    );
    expect(() => createTokenBucketBudget({ successRefund: -2 })).toThrow(/successRefund/);
  });
});

describe('createRatioBudget', () => {
  it('with no traffic allows the reserve: minRetriesPerSecond over the window', () => {
    const clock = new FakeClock(0);
    const budget = createRatioBudget({ clock, minRetriesPerSecond: 2, windowMs: 5_000 });
    expect(budget.remaining()).toBe(10);
    let allowed = 0;
    while (budget.tryAcquireRetry(undefined)) allowed++;
    expect(allowed).toBe(10);
    expect(budget.remaining()).toBe(0);
  });

  it('takes back a retry paid for and not sent, even a slice later', async () => {
    const clock = new FakeClock(0);
    const budget = createRatioBudget({ clock, minRetriesPerSecond: 2, windowMs: 5_000 });
    expect(budget.tryAcquireRetry(undefined)).toBe(true);
    expect(budget.remaining()).toBe(9);
    await clock.advance(700); // the sleep before the retry, into the next slice
    budget.refundRetry?.(undefined);
    expect(budget.remaining()).toBe(10);
    budget.refundRetry?.(undefined); // nothing left to give back: no credit beyond the reserve
    expect(budget.remaining()).toBe(10);
  });

  it('adds ratio * requests to the reserve', () => {
    const clock = new FakeClock(0);
    const budget = createRatioBudget({ clock, ratio: 0.2, minRetriesPerSecond: 0 });
    for (let i = 0; i < 100; i++) budget.onRequest();
    let allowed = 0;
    while (budget.tryAcquireRetry(undefined)) allowed++;
    expect(allowed).toBe(20);
    expect(budget.stats()).toEqual({ requests: 100, retries: 20 });
  });

  it('forgets requests and retries older than the window, slice by slice', async () => {
    const clock = new FakeClock(0);
    const budget = createRatioBudget({
      clock,
      ratio: 0.5,
      minRetriesPerSecond: 0,
      windowMs: 1_000,
    });
    for (let i = 0; i < 10; i++) budget.onRequest();
    for (let i = 0; i < 5; i++) expect(budget.tryAcquireRetry(undefined)).toBe(true);
    expect(budget.tryAcquireRetry(undefined)).toBe(false);
    await clock.advance(500);
    for (let i = 0; i < 4; i++) budget.onRequest();
    expect(budget.stats()).toEqual({ requests: 14, retries: 5 });
    expect(budget.remaining()).toBe(2);
    await clock.advance(600); // the first batch (t = 0) is now more than a window old
    expect(budget.stats()).toEqual({ requests: 4, retries: 0 });
    expect(budget.remaining()).toBe(2);
    await clock.advance(1_000);
    expect(budget.stats()).toEqual({ requests: 0, retries: 0 });
  });

  it('validates its options', () => {
    expect(() => createRatioBudget({ ratio: -0.1 })).toThrow(InvalidArgumentError);
    expect(() => createRatioBudget({ minRetriesPerSecond: Number.POSITIVE_INFINITY })).toThrow(
      /minRetriesPerSecond/,
    );
    expect(() => createRatioBudget({ windowMs: 0 })).toThrow(/windowMs/);
  });
});
