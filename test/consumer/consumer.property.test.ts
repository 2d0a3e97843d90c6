import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import { NonRetryableError } from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

type Run = 'ok' | 'transient' | 'fatal';

const MAX_ATTEMPTS = 4;

const scenario = fc.record({
  /** What each successive run of a key's handler does (then 'ok' once the plan runs out). */
  plans: fc.array(fc.array(fc.constantFrom<Run>('ok', 'transient', 'fatal'), { maxLength: 6 }), {
    minLength: 1,
    maxLength: 4,
  }),
  /** Publications: which key each copy carries (duplicates are likely). */
  publications: fc.array(fc.nat(3), { minLength: 1, maxLength: 10 }),
  /** How long each run takes, ms. */
  durations: fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 8 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  extraPrefetch: fc.integer({ min: 0, max: 3 }),
  /** Store outage window (ms from the start) during which every store call fails. */
  outage: fc.option(fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 1, max: 3000 }))),
});

describe('consumer properties', () => {
  it('settles every publication once (acked or quarantined), one effect per key at most, within the bounds', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const clock = new FakeClock();
        const start = clock.now();
        const source = createMemorySource({ name: 'prop', clock });
        const memory = createMemoryStore({ clock });
        const inOutage = () =>
          s.outage !== null &&
          clock.now() - start >= s.outage[0] &&
          clock.now() - start < s.outage[0] + s.outage[1];
        const store = new Proxy(memory, {
          get(target, property) {
            const value = Reflect.get(target, property);
            if (typeof value !== 'function') return value;
            return (...args: unknown[]) =>
              inOutage()
                ? Promise.reject(new Error('connect ECONNREFUSED'))
                : value.apply(target, args);
          },
        });
        const keys = s.plans.length;
        const runs = new Array<number>(keys).fill(0);
        // The downstream API (a payment provider) dedupes by the idempotency key it is given.
        const calls = new Array<number>(keys).fill(0);
        const charged = new Map<number, Set<string>>();
        let running = 0;
        let maxRunning = 0;
        let runCount = 0;
        const prefetch = s.concurrency + s.extraPrefetch;
        const consumer = createConsumer({
          source,
          clock,
          random: seededRandom(1),
          concurrency: s.concurrency,
          prefetch,
          idempotency: { store, lease: '2s' },
          retry: { maxAttempts: MAX_ATTEMPTS, base: 100, cap: 1000, jitter: 'none' },
          async handler(message, ctx) {
            const k = Number(message.headers.k);
            const plan = s.plans[k] ?? [];
            const outcome = plan[runs[k] ?? 0] ?? 'ok';
            runs[k] = (runs[k] ?? 0) + 1;
            running += 1;
            maxRunning = Math.max(maxRunning, running);
            const ms = s.durations[runCount++ % s.durations.length] ?? 0;
            await new Promise<void>((resolve) => clock.setTimer(ms, resolve));
            running -= 1;
            if (outcome === 'transient') {
              throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
            }
            if (outcome === 'fatal') throw new NonRetryableError('fatal', { code: 'FATAL' });
            await ctx.step('charge', () => {
              calls[k] = (calls[k] ?? 0) + 1;
              const keysSeen = charged.get(k) ?? new Set<string>();
              keysSeen.add(ctx.keyFor('charge'));
              charged.set(k, keysSeen);
              return true;
            });
          },
        });
        await consumer.start();
        s.publications.forEach((p, i) => {
          const k = p % keys;
          source.publish({
            id: `m${i}`,
            body: { k },
            headers: { 'idempotency-key': `key-${k}`, k: String(k) },
          });
        });
        for (let i = 0; i < 2000 && !(source.isIdle() && running === 0); i++) {
          await clock.advance(250);
        }
        expect(source.isIdle()).toBe(true);

        const stats = source.stats();
        const quarantined = await source.deadLetters.list();
        // Every copy ended exactly once: acked or in the dead-letter queue.
        expect(stats.acked + quarantined.length).toBe(s.publications.length);
        expect(stats.maxUnsettled).toBeLessThanOrEqual(prefetch);
        expect(maxRunning).toBeLessThanOrEqual(s.concurrency);
        for (let k = 0; k < keys; k++) {
          // One charge per operation, whatever happened.
          expect(charged.get(k)?.size ?? 0).toBeLessThanOrEqual(1);
          // Without a store outage the downstream is not even called twice: a step whose
          // save failed is the one window where only its idempotency key protects it.
          if (s.outage === null) expect(calls[k]).toBeLessThanOrEqual(1);
        }
        // A key whose effect never happened has no acked copy (nothing replayed a success).
        const ackedKeys = new Set(
          source
            .deliveries()
            .filter((d) => d.settlement === 'ack')
            .map((d) => Number(d.id.slice(1)))
            .map((i) => (s.publications[i] ?? 0) % keys),
        );
        for (const k of ackedKeys) expect(charged.get(k)?.size).toBe(1);
        for (const q of quarantined) {
          const h = q.history;
          expect(h.firstFailureAt).toBeLessThanOrEqual(h.lastFailureAt);
          expect(h.lastFailureAt).toBeLessThanOrEqual(h.quarantinedAt);
          if (h.reason === 'attempts_exhausted') {
            expect(h.attempts).toBeGreaterThanOrEqual(MAX_ATTEMPTS);
            expect(h.lastError.code).toBe('ECONNRESET');
          } else {
            expect(h.reason).toBe('non_retryable');
            expect(h.lastError.code).toBe('FATAL');
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
