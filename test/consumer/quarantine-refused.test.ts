import { describe, expect, it } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import type { Delivery, MessageSource } from '../../src/consumer/types.js';
import { NonRetryableError } from '../../src/errors.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import type { IdempotencyContext } from '../../src/idempotency/types.js';
import { seededRandom } from '../../src/random.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { refusingQuarantine } from './fixtures/refusing-quarantine.js';

interface Scenario {
  failure?: () => Error;
  maxAttempts?: number;
  refusals?: number;
  maxSteps?: number;
  /** The store the consumers use, over the memory store on the fake clock. */
  store?: (inner: IdempotencyStore) => IdempotencyStore;
  handler?: (fail: boolean, ctx: IdempotencyContext) => Promise<void>;
  /** Seconds between the quarantine and the redrive. */
  redriveAfter?: number;
}

/**
 * One message whose handler fails, on a dead-letter destination that refuses the first
 * `refusals` (default 3) quarantines. Each second of fake time runs a new consumer on the
 * same queue and store (as another process would take the redelivery): what the first one
 * decided must reach the next through the store. Then the cause is fixed and the message
 * redriven.
 */
async function scenario(options: Scenario) {
  const clock = new FakeClock();
  const inner = createMemoryStore({ clock });
  const store = options.store ? options.store(inner) : inner;
  const queue = createMemorySource({ name: 'orders', clock });
  const source = refusingQuarantine(queue, options.refusals ?? 3);
  const failure = options.failure ?? (() => new NonRetryableError('declined', { code: 'NO' }));
  let runs = 0;
  let fail = true;
  const consumer = () =>
    createConsumer({
      source,
      idempotency: { store, ...(options.maxSteps ? { maxSteps: options.maxSteps } : {}) },
      clock,
      random: seededRandom(1),
      retry: { maxAttempts: options.maxAttempts ?? 10, base: '1s', cap: '1s', jitter: 'none' },
      handler: async (_message, ctx) => {
        runs++;
        if (options.handler) return options.handler(fail, ctx);
        if (fail) throw failure();
      },
    });
  const during = async (seconds: number) => {
    for (let i = 0; i < seconds; i++) {
      const c = consumer();
      await c.start();
      await clock.advance(1000);
      await c.stop({ timeoutMs: 0 });
    }
  };
  queue.publish({ body: {}, headers: { 'idempotency-key': 'k1' }, id: 'm1' });
  await during(20);
  const quarantined = await queue.deadLetters.list();
  const before = runs;
  await clock.advance((options.redriveAfter ?? 0) * 1000);
  fail = false;
  const moved = await queue.deadLetters.redrive();
  await during(3);
  return {
    runs: before,
    quarantined,
    moved,
    afterRedrive: runs - before,
    left: await queue.deadLetters.list(),
  };
}

describe('a quarantine the dead-letter destination refuses', () => {
  it('attempts used up: quarantined later without running the handler past maxAttempts', async () => {
    const reset = () => Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    const { runs, quarantined, moved, afterRedrive } = await scenario({
      failure: reset,
      maxAttempts: 2,
    });
    expect(runs).toBe(2);
    expect(quarantined).toHaveLength(1);
    expect(quarantined[0]?.history).toMatchObject({
      reason: 'attempts_exhausted',
      lastError: { name: 'Error', code: 'ECONNRESET', message: 'reset' },
    });
    expect(quarantined[0]?.history.attempts).toBeGreaterThanOrEqual(2);
    expect(moved).toBe(1);
    expect(afterRedrive).toBe(1);
  });

  it('non-retryable: quarantined later without running the handler again', async () => {
    const declined = () => new NonRetryableError('card declined', { code: 'CARD_DECLINED' });
    const { runs, quarantined, moved, afterRedrive } = await scenario({ failure: declined });
    expect(runs).toBe(1);
    expect(quarantined).toHaveLength(1);
    expect(quarantined[0]?.history).toMatchObject({
      reason: 'non_retryable',
      // Deliveries, as the attempts of a quarantine always are: the first and three refused.
      attempts: 4,
      lastError: { name: 'NonRetryableError', code: 'CARD_DECLINED', message: 'card declined' },
    });
    expect(moved).toBe(1);
    expect(afterRedrive).toBe(1);
  });

  /** The memory store, whose saves of the `done` mark fail `times` times. */
  const doneFails =
    (times: number) =>
    (inner: IdempotencyStore): IdempotencyStore => {
      let left = times;
      return {
        ...inner,
        async saveStep(key, token, name, result) {
          if (name === 'reprocess:quarantine' && result.includes('done') && left > 0) {
            left--;
            throw new Error('connection reset');
          }
          return inner.saveStep(key, token, name, result);
        },
      };
    };

  it('a done mark that fails once is written on the next try: a prompt redrive runs', async () => {
    const { runs, moved, afterRedrive, left } = await scenario({ store: doneFails(1) });
    expect([runs, moved, afterRedrive, left.length]).toEqual([1, 1, 1, 0]);
  });

  it('a done mark that cannot be written holds only for its window: a later redrive runs', async () => {
    // The mark's window is 2 x the backoff cap, at least a minute.
    const prompt = await scenario({ store: doneFails(1_000) });
    expect([prompt.moved, prompt.afterRedrive, prompt.left.length]).toEqual([1, 0, 1]);
    const later = await scenario({ store: doneFails(1_000), redriveAfter: 90 });
    expect([later.moved, later.afterRedrive, later.left.length]).toEqual([1, 1, 0]);
  });

  it("the runtime's own steps take none of the user's maxSteps", async () => {
    const { runs, afterRedrive, left } = await scenario({
      maxSteps: 2,
      handler: async (fail, ctx) => {
        await ctx.step('reserve', () => 'r1');
        if (fail) throw new NonRetryableError('declined', { code: 'NO' });
        await ctx.step('charge', () => 'c1');
      },
    });
    expect([runs, afterRedrive, left.length]).toEqual([1, 1, 0]);
  });

  it("refuses a handler's step named like the runtime's own, which would escape the limits", async () => {
    const clock = new FakeClock();
    const queue = createMemorySource({ name: 'orders', clock });
    const errors: unknown[] = [];
    const consumer = createConsumer({
      source: queue,
      idempotency: { store: createMemoryStore({ clock }), maxSteps: 1 },
      clock,
      onEvent: (event) => {
        if (event.type === 'quarantined') errors.push(event.error);
      },
      handler: async (_message, ctx) => {
        await ctx.step('reprocess:quarantine', () => 'x'.repeat(50_000));
      },
    });
    await consumer.start();
    queue.publish({ body: {}, headers: { 'idempotency-key': 'k-reserved' }, id: 'm-reserved' });
    await clock.advance(1000);
    await consumer.stop({ timeoutMs: 0 });
    expect(String(errors[0])).toMatch(/reserved by the runtime/);
  });
});
