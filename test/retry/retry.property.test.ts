import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DeadlineExceededError,
  RetryBudgetExhaustedError,
  RetryExhaustedError,
} from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';
import { createRatioBudget } from '../../src/retry/ratio-budget.js';
import { retry } from '../../src/retry/retry.js';
import { createTokenBucketBudget } from '../../src/retry/token-bucket-budget.js';
import type { AttemptContext } from '../../src/retry/types.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { codeError, drive } from './helpers.js';

const START = 1_000_000;

const loopPolicy = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 12 }),
  backoff: fc.constantFrom('constant', 'linear', 'exponential' as const),
  jitter: fc.constantFrom('none', 'full', 'equal', 'decorrelated' as const),
  base: fc.integer({ min: 0, max: 2_000 }),
  cap: fc.integer({ min: 0, max: 20_000 }),
  deadline: fc.option(fc.integer({ min: 1, max: 30_000 }), { nil: undefined }),
  attemptTimeout: fc.option(fc.integer({ min: 1, max: 3_000 }), { nil: undefined }),
  seed: fc.integer(),
});

describe('retry loop properties', () => {
  it('attempts never exceed maxAttempts, no attempt starts at or after the deadline, sleeps stay under cap', async () => {
    await fc.assert(
      fc.asyncProperty(
        loopPolicy,
        fc.array(fc.integer({ min: 0, max: 4_000 }), { minLength: 12, maxLength: 12 }),
        fc.integer({ min: 0, max: 12 }),
        async (p, durations, succeedAt) => {
          const clock = new FakeClock(START);
          const starts: number[] = [];
          const delays: number[] = [];
          const fn = (ctx: AttemptContext) => {
            starts.push(clock.now());
            const duration = durations[ctx.attempt - 1] ?? 0;
            return new Promise<string>((resolve, reject) => {
              clock.setTimer(duration, () =>
                ctx.attempt === succeedAt ? resolve('ok') : reject(codeError('ECONNRESET')),
              );
            });
          };
          const { seed, deadline, attemptTimeout, ...options } = p;
          const result = await drive(
            clock,
            retry(fn, {
              ...options,
              ...(deadline === undefined ? {} : { deadline }),
              ...(attemptTimeout === undefined ? {} : { attemptTimeout }),
              clock,
              random: seededRandom(seed),
              onRetry: (ev) => delays.push(ev.delay),
            }),
          );
          expect(starts.length).toBeGreaterThanOrEqual(1);
          expect(starts.length).toBeLessThanOrEqual(p.maxAttempts);
          if (p.deadline !== undefined) {
            for (const t of starts) expect(t).toBeLessThan(START + p.deadline);
          }
          for (const d of delays) expect(d).toBeLessThanOrEqual(p.cap);
          if (result.ok) {
            expect(succeedAt).toBe(starts.length);
          } else {
            const e = result.error;
            expect(e instanceof RetryExhaustedError || e instanceof DeadlineExceededError).toBe(
              true,
            );
            if (e instanceof RetryExhaustedError) expect(e.attempts).toBe(p.maxAttempts);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('under a constantly failing dependency, total calls stay within the token bucket bound', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 10 }),
        async (callers, capacity, retryCost, maxAttempts) => {
          const budget = createTokenBucketBudget({ capacity, retryCost });
          let calls = 0;
          const failing = async () => {
            calls++;
            throw codeError('ECONNRESET');
          };
          const outcomes = await Promise.allSettled(
            Array.from({ length: callers }, () =>
              retry(failing, { budget, maxAttempts, base: 0, jitter: 'none' }),
            ),
          );
          const bound = callers + Math.floor(capacity / retryCost);
          expect(calls).toBeLessThanOrEqual(bound);
          expect(calls).toBeLessThanOrEqual(callers * maxAttempts);
          // every first attempt was made, whatever the budget
          expect(calls).toBeGreaterThanOrEqual(callers);
          expect(budget.tokens).toBeGreaterThanOrEqual(0);
          for (const o of outcomes) {
            expect(o.status).toBe('rejected');
            const reason = (o as PromiseRejectedResult).reason;
            expect(
              reason instanceof RetryExhaustedError || reason instanceof RetryBudgetExhaustedError,
            ).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('under a constantly failing dependency, retries stay within the ratio budget bound', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 80 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 5 }),
        async (callers, ratio, minRetriesPerSecond) => {
          const clock = new FakeClock(START);
          const budget = createRatioBudget({ ratio, minRetriesPerSecond, windowMs: 1000, clock });
          let calls = 0;
          const failing = async () => {
            calls++;
            throw codeError('ECONNRESET');
          };
          // base 0: the fake clock never moves, so everything happens inside one window
          await Promise.allSettled(
            Array.from({ length: callers }, () =>
              retry(failing, { budget, maxAttempts: 10, base: 0, jitter: 'none', clock }),
            ),
          );
          const retries = calls - callers;
          expect(retries).toBeLessThanOrEqual(Math.floor(minRetriesPerSecond + ratio * callers));
          expect(budget.remaining()).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('budget properties', () => {
  const operation = fc.oneof(
    fc.constant({ op: 'request' as const }),
    fc.constant({ op: 'success' as const }),
    fc.record({ op: fc.constant('retry' as const), timeout: fc.boolean() }),
    fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 5000 }) }),
  );

  it('neither budget ever goes negative, whatever the sequence of events', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(operation, { maxLength: 300, size: 'max' }),
        fc.record({
          capacity: fc.integer({ min: 0, max: 100 }),
          retryCost: fc.integer({ min: 1, max: 15 }),
          timeoutRetryCost: fc.integer({ min: 1, max: 30 }),
          successRefund: fc.integer({ min: 0, max: 10 }),
        }),
        fc.double({ min: 0, max: 2, noNaN: true }),
        async (ops, bucketOptions, ratio) => {
          const clock = new FakeClock(START);
          const bucket = createTokenBucketBudget(bucketOptions);
          const ratioBudget = createRatioBudget({
            ratio,
            minRetriesPerSecond: 1,
            windowMs: 2000,
            clock,
          });
          for (const step of ops) {
            for (const b of [bucket, ratioBudget]) {
              if (step.op === 'request') b.onRequest();
              else if (step.op === 'success') b.onSuccess();
              else if (step.op === 'retry') {
                b.tryAcquireRetry(step.timeout ? codeError('ETIMEDOUT') : codeError('ECONNRESET'));
              }
            }
            if (step.op === 'wait') await clock.advance(step.ms);
            expect(bucket.tokens).toBeGreaterThanOrEqual(0);
            expect(bucket.tokens).toBeLessThanOrEqual(bucketOptions.capacity);
            expect(ratioBudget.remaining()).toBeGreaterThanOrEqual(0);
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});
