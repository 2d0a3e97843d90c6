import { describe, expect, it } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import type { Delivery, MessageSource } from '../../src/consumer/types.js';
import { NonRetryableError } from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

/** `source`, whose dead-letter destination refuses the first `times` quarantines. */
function refusing(source: MessageSource, times: number): MessageSource {
  let left = times;
  return {
    name: source.name,
    start: (onDelivery, options) =>
      source.start(
        (d) =>
          onDelivery(
            Object.assign(Object.create(d) as Delivery, {
              quarantine: (history: Parameters<Delivery['quarantine']>[0]) => {
                if (left > 0) {
                  left -= 1;
                  return Promise.reject(new Error('dead-letter publish not confirmed'));
                }
                return d.quarantine(history);
              },
            }),
          ),
        options,
      ),
    stop: () => source.stop(),
    close: () => source.close(),
  };
}

/**
 * One message whose handler fails with `failure`, on a dead-letter destination that refuses
 * three quarantines. Each second of fake time runs a new consumer on the same queue and store
 * (as another process would take the redelivery): what the first one decided must reach the
 * next through the store.
 */
async function scenario(failure: () => Error, maxAttempts: number) {
  const clock = new FakeClock();
  const store = createMemoryStore({ clock });
  const queue = createMemorySource({ name: 'orders', clock });
  const source = refusing(queue, 3);
  let runs = 0;
  let fail = true;
  const consumer = () =>
    createConsumer({
      source,
      idempotency: { store },
      clock,
      random: seededRandom(1),
      retry: { maxAttempts, base: '1s', cap: '1s', jitter: 'none' },
      handler: async () => {
        runs++;
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
  // The cause is fixed; a redrive runs the handler once more, and it succeeds.
  fail = false;
  const moved = await queue.deadLetters.redrive();
  await during(3);
  return { runs: before, quarantined, moved, afterRedrive: runs - before };
}

describe('a quarantine the dead-letter destination refuses', () => {
  it('attempts used up: quarantined later without running the handler past maxAttempts', async () => {
    const reset = () => Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    const { runs, quarantined, moved, afterRedrive } = await scenario(reset, 2);
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
    const { runs, quarantined, moved, afterRedrive } = await scenario(declined, 10);
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
});
