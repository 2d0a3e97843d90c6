/**
 * Edges of the consumer runtime where the idempotency record and the delivery meet: a stop()
 * that gives a handler up, a message past its age whose operation had completed, and the
 * randomness of the retry delays.
 */
import { describe, expect, it } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import { redrive } from '../../src/consumer/redrive.js';
import { seededRandom } from '../../src/random.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

function summary(events: ConsumerEvent[]): string[] {
  return events.map((e) => (e.type === 'quarantined' ? `quarantined:${e.history.reason}` : e.type));
}

describe('consumer runtime edges', () => {
  it('a handler given up on by stop() is never remembered as failed: the redelivery runs it (rememberFailures: true)', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'edges-stop', clock });
    const store = createMemoryStore({ clock });
    const events: ConsumerEvent[] = [];
    let runs = 0;
    let hang = true;
    const options = {
      source,
      // A well-behaved handler: it gives up when its signal aborts, with the signal's reason.
      handler: async (m: { signal: AbortSignal }) => {
        runs++;
        if (!hang) return 'ok';
        await new Promise<void>((_, reject) => {
          m.signal.addEventListener('abort', () => reject(m.signal.reason), { once: true });
        });
      },
      idempotency: { store, lease: '10s', rememberFailures: true },
      clock,
      random: seededRandom(1),
      onEvent: (e: ConsumerEvent) => events.push(e),
    };
    const first = createConsumer(options);
    await first.start();
    source.publish({ body: { n: 1 }, headers: { 'idempotency-key': 'stop-k1' } });
    await clock.advance(0);
    const stopped = first.stop({ timeoutMs: 100 });
    await clock.advance(100);
    expect(await stopped).toEqual({ finished: 0, released: 1, settling: 0 });
    await clock.advance(0);

    hang = false;
    const second = createConsumer(options);
    await second.start();
    await clock.runAll(100);
    expect(runs).toBe(2);
    expect(summary(events)).toEqual(['released', 'acked']);
    expect(source.deadLetters.size).toBe(0);
    // Nothing to redrive either: the operation completed.
    expect(await redrive(source.deadLetters)).toBe(0);
    await second.stop({ timeoutMs: 0 });
  });

  it('a message past maxMessageAgeMs whose operation completed (its ack lost) is acked as a replay, not quarantined', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'edges-age', clock });
    const store = createMemoryStore({ clock });
    const events: ConsumerEvent[] = [];
    let runs = 0;
    const consumer = createConsumer({
      source,
      handler: async () => {
        runs++;
        await new Promise<void>((done) => clock.setTimer(50_000, done));
        // The connection drops as the handler ends: the ack is refused, the broker redelivers.
        source.interrupt();
        return 'charged';
      },
      idempotency: { store, lease: '10s' },
      clock,
      random: seededRandom(3),
      maxMessageAgeMs: 50_000,
      onEvent: (e) => events.push(e),
    });
    await consumer.start();
    source.publish({ body: { amount: 5 }, headers: { 'idempotency-key': 'age-k1' } });
    await clock.advance(60_000);
    await clock.advance(60_000);
    expect(runs).toBe(1);
    expect(source.deadLetters.size).toBe(0);
    expect(events.some((e) => e.type === 'acked' && e.replayed)).toBe(true);

    // (One that never ran is still quarantined for its age: consumer.test.ts.)
    await consumer.stop({ timeoutMs: 0 });
  });

  it("draws the retry delays from retry.random when the consumer's own random is not given", async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'edges-random', clock });
    const events: ConsumerEvent[] = [];
    let draws = 0;
    const consumer = createConsumer({
      source,
      handler: async () => {
        throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
      },
      idempotency: { store: createMemoryStore({ clock }) },
      clock,
      // Full jitter: draw × min(cap, base × 2^n); a draw of 0.5 on the first retry is 1000 ms.
      retry: {
        base: '2s',
        jitter: 'full',
        random: () => {
          draws++;
          return 0.5;
        },
      },
      onEvent: (e) => events.push(e),
    });
    await consumer.start();
    source.publish({ body: {}, headers: { 'idempotency-key': 'random-k1' } });
    await clock.advance(0);
    await clock.advance(0);
    const retry = events.find((e) => e.type === 'retry_scheduled') as { delayMs: number };
    expect(draws).toBeGreaterThan(0);
    expect(retry.delayMs).toBe(1000);
    await consumer.stop({ timeoutMs: 0 });
  });
});
