import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { systemClock } from '../../src/clock.js';
import {
  type Consumer,
  type ConsumerOptions,
  createConsumer,
} from '../../src/consumer/consumer.js';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import type { ConsumerMessage } from '../../src/consumer/message-processor.js';
import { redrive } from '../../src/consumer/redrive.js';
import type {
  DeadLetterQueue,
  Delivery,
  MessageSource,
  OutgoingMessage,
  QuarantinedMessage,
} from '../../src/consumer/types.js';
import { NonRetryableError } from '../../src/errors.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import type { IdempotencyContext } from '../../src/idempotency/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';

/**
 * One broker under test, fresh for each case: `describeConsumerConformance` calls the
 * factory at the start of every case and `cleanup` at its end.
 */
export interface ConsumerConformanceHarness {
  /**
   * A source on a fresh, empty queue (stream, subject) of its own. The queue must exist when
   * the factory resolves: some cases publish before any consumer starts.
   */
  source: MessageSource;
  /** The dead-letter destination the source quarantines into; its redrive goes back to `source`. */
  dlq: DeadLetterQueue;
  /** Publishes as a producer would. Two calls with equal content are a duplicate publication. */
  publish(message: OutgoingMessage): Promise<void>;
  /**
   * A new consumer connection to the same queue, for the consumer that takes over after a
   * crash, or after a stop and `source.close()` (default: `source` itself, started again,
   * which only an in-memory source allows).
   */
  reconnect?(): Promise<MessageSource>;
  /**
   * The idempotency store every consumer of the case shares (default: a memory store on
   * `clock`). With `child`, it must be reachable from the child process too (SQLite file,
   * Redis, PostgreSQL...).
   */
  store?: IdempotencyStore;
  /** The clock of the broker and the consumers (default: the system clock). */
  clock?: Clock;
  /** For a fake clock: moves it forward by `ms`. The suite calls it while it waits. */
  advance?(ms: number): Promise<void>;
  /**
   * In-process crash: the consumer's connection drops and every unsettled delivery goes
   * back to the broker at once (the memory source's `crash()`). Give this or `child`.
   */
  crash?(): Promise<void>;
  /**
   * Real crash: a consumer in a child process, killed with SIGKILL mid-handler. `module` is
   * the absolute path of a module exporting
   * `createChildEnvironment(args): Promise<{ source: MessageSource; store: IdempotencyStore }>`,
   * run by test/consumer/fixtures/conformance-child.ts under `node --import tsx`; `args`
   * is passed through JSON (e.g. the queue name of this case).
   */
  child?: { module: string; args?: unknown };
  /**
   * Drops the consumer's broker connection mid-stream (e.g. closes it from the server side);
   * the adapter is expected to reconnect by itself. The memory source's `interrupt()`.
   */
  dropConnection?(): Promise<void>;
  /** Removes what the case created (queues, streams, connections). */
  cleanup(): Promise<void>;
}

/** Tuning for brokers whose timing is real. */
export interface ConsumerConformanceOptions {
  /** First retry delay (ms); the retry delays are `base`, `2 * base` (default 100). */
  baseDelayMs?: number;
  /** How much earlier than its delay a redelivery may arrive, ms (default 0). */
  earlyToleranceMs?: number;
  /** How much later than its delay a redelivery may arrive, ms (default 1000; delay tiers round up). */
  lateToleranceMs?: number;
  /** How long to wait for an expected outcome, ms on the harness clock (default 10000). */
  waitTimeoutMs?: number;
  /** Size of the enormous message (default 256 KiB; NATS allows 1 MiB by default). */
  largeMessageBytes?: number;
  /** Idempotency lease in the crash cases, ms (default 1000): a takeover waits this long. */
  leaseMs?: number;
}

/** What the instrumented source saw: deliveries and settling calls, with their times. */
interface Trace {
  deliveries: Array<{ id: string; deliveryCount: number | undefined; at: number }>;
  settles: Array<{ id: string; action: string; at: number; delayMs?: number }>;
  unsettled: number;
  maxUnsettled: number;
}

const OPERATION = 'conformance';
const CHILD_RUNNER = fileURLToPath(
  new URL('../consumer/fixtures/conformance-child.ts', import.meta.url),
);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The consumer conformance suite: the same cases against every broker adapter (the
 * in-memory source, RabbitMQ, NATS JetStream). `factory` builds a fresh harness per case.
 *
 * ```ts
 * describeConsumerConformance('rabbitmq', async ({ id }) => ({ source, dlq, publish, cleanup }));
 * ```
 */
export function describeConsumerConformance(
  name: string,
  factory: (test: { id: string; title: string }) => Promise<ConsumerConformanceHarness>,
  options: ConsumerConformanceOptions = {},
): void {
  const base = options.baseDelayMs ?? 100;
  const early = options.earlyToleranceMs ?? 0;
  const late = options.lateToleranceMs ?? 1000;
  const waitTimeoutMs = options.waitTimeoutMs ?? 10_000;
  const largeBytes = options.largeMessageBytes ?? 256 * 1024;
  const leaseMs = options.leaseMs ?? 1000;

  describe(`consumer conformance: ${name}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const fn of cleanups.splice(0).reverse()) {
        await fn().catch(() => undefined);
      }
    });

    /** One case's world: the harness, an instrumented source, consumers, waiting. */
    async function setup(title: string) {
      const id = randomUUID().slice(0, 8);
      const harness = await factory({ id, title });
      cleanups.push(() => harness.cleanup());
      const clock = harness.clock ?? systemClock;
      const store = harness.store ?? createMemoryStore({ clock });
      const trace: Trace = { deliveries: [], settles: [], unsettled: 0, maxUnsettled: 0 };
      const events: ConsumerEvent[] = [];

      async function waitFor(
        what: string,
        check: () => boolean | Promise<boolean>,
        timeoutMs = waitTimeoutMs,
      ): Promise<void> {
        const started = clock.now();
        for (let i = 0; ; i++) {
          if (await check()) return;
          if (clock.now() - started > timeoutMs || i > 100_000) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
          }
          await pause(10);
        }
      }

      /** Lets `ms` pass on the harness clock (a fake clock is advanced). */
      async function pause(ms: number): Promise<void> {
        if (harness.advance) await harness.advance(ms);
        else await new Promise((resolve) => setTimeout(resolve, ms));
      }

      function consumer<B = unknown>(
        handler: (message: ConsumerMessage<B>, ctx: IdempotencyContext) => Promise<unknown>,
        overrides: Partial<ConsumerOptions<B>> & { source?: MessageSource } = {},
      ): Consumer {
        const c = createConsumer<B>({
          handler,
          idempotency: { store, operation: OPERATION, lease: leaseMs },
          retry: {
            maxAttempts: 3,
            backoff: 'exponential',
            base,
            factor: 2,
            cap: base * 4,
            jitter: 'none',
          },
          clock,
          onEvent: (event) => events.push(event),
          ...overrides,
          source: instrument(overrides.source ?? harness.source, clock, trace),
        });
        cleanups.push(async () => {
          await c.stop({ timeoutMs: 0 });
        });
        return c;
      }

      async function quarantinedWith(key: string): Promise<QuarantinedMessage[]> {
        return harness.dlq.list({ idempotencyKey: key });
      }

      const settlesOf = (id: string) => trace.settles.filter((s) => s.id === id);
      const deliveriesOf = (id: string) => trace.deliveries.filter((d) => d.id === id);

      return {
        harness,
        clock,
        store,
        trace,
        events,
        waitFor,
        pause,
        consumer,
        quarantinedWith,
        settlesOf,
        deliveriesOf,
        key: (label: string) => `${label}-${id}`,
      };
    }

    /**
     * Two messages delivered to a consumer of concurrency 1, then a stop while the first runs:
     * the first finishes and is acked, the second goes back unstarted. Every message the
     * consumer runs later is recorded in `done` too.
     */
    async function stoppedWithOneWaiting(title: string) {
      const t = await setup(title);
      const key = t.key(title);
      const gate = deferred();
      const done: string[] = [];
      const consumer = t.consumer(
        async (m) => {
          if (m.id === `${key}-1-m`) await gate.promise;
          done.push(m.id);
        },
        { concurrency: 1, prefetch: 2 },
      );
      await t.harness.publish(message(`${key}-1`, { i: 1 }));
      await t.harness.publish(message(`${key}-2`, { i: 2 }));
      await consumer.start();
      await t.waitFor('both delivered', () => t.trace.deliveries.length === 2);
      const stopping = consumer.stop({ timeoutMs: waitTimeoutMs });
      gate.resolve();
      expect(await stopping).toEqual({ finished: 1, released: 1, settling: 0 });
      return { t, key, done, consumer };
    }

    function message(key: string, body: unknown, id?: string): OutgoingMessage {
      return {
        id: id ?? `${key}-m`,
        body: encoder.encode(JSON.stringify(body)),
        headers: { 'idempotency-key': key, 'x-test': 'kept' },
      };
    }

    it('acks a success once and runs its effect once', async () => {
      const t = await setup('success');
      const key = t.key('ok');
      const effects: string[] = [];
      const c = t.consumer<{ n: number }>(async (m) => {
        effects.push(`${m.headers['idempotency-key']}:${m.body.n}`);
        return { done: true };
      });
      await c.start();
      await t.harness.publish(message(key, { n: 7 }));
      await t.waitFor('the ack', () => t.settlesOf(`${key}-m`).length === 1);
      // Give a wrongly unacked message the time to come back.
      await t.pause(base * 3);
      expect(effects).toEqual([`${key}:7`]);
      expect(t.settlesOf(`${key}-m`).map((s) => s.action)).toEqual(['ack']);
      expect(t.deliveriesOf(`${key}-m`)).toHaveLength(1);
      expect(await t.quarantinedWith(key)).toEqual([]);
    });

    it('redelivers a transient failure after its backoff, by the delivery timestamps', async () => {
      const t = await setup('transient');
      const key = t.key('flaky');
      const id = `${key}-m`;
      let calls = 0;
      const effects: string[] = [];
      const c = t.consumer(async (m) => {
        calls += 1;
        if (calls <= 2) throw Object.assign(new Error(`reset ${calls}`), { code: 'ECONNRESET' });
        effects.push(m.id);
      });
      await c.start();
      await t.harness.publish(message(key, { n: 1 }));
      await t.waitFor('the ack after two retries', () =>
        t.settlesOf(id).some((s) => s.action === 'ack'),
      );
      const settles = t.settlesOf(id);
      const deliveries = t.deliveriesOf(id);
      expect(settles.map((s) => s.action)).toEqual(['retryLater', 'retryLater', 'ack']);
      expect(settles.map((s) => s.delayMs)).toEqual([base, base * 2, undefined]);
      expect(deliveries).toHaveLength(3);
      for (const n of [0, 1]) {
        const asked = settles[n] as { at: number; delayMs: number };
        const next = deliveries[n + 1] as { at: number };
        const gap = next.at - asked.at;
        expect(gap, `gap before delivery ${n + 2}`).toBeGreaterThanOrEqual(asked.delayMs - early);
        expect(gap, `gap before delivery ${n + 2}`).toBeLessThanOrEqual(asked.delayMs + late);
      }
      const counts = deliveries.map((d) => d.deliveryCount);
      expect(counts).toEqual([1, 2, 3]);
      expect(effects).toEqual([id]);
    });

    it('quarantines after max attempts, payload untouched, with the history', async () => {
      const t = await setup('exhausted');
      const key = t.key('down');
      const id = `${key}-m`;
      const failures: number[] = [];
      const c = t.consumer(async () => {
        failures.push(t.clock.now());
        throw Object.assign(new Error(`connection reset (attempt ${failures.length})`), {
          code: 'ECONNRESET',
        });
      });
      await c.start();
      const publishedAt = t.clock.now();
      const sent = message(key, { order: 42 });
      await t.harness.publish(sent);
      await t.waitFor('the quarantine', async () => (await t.quarantinedWith(key)).length === 1);
      const [q] = (await t.quarantinedWith(key)) as [QuarantinedMessage];
      expect(failures).toHaveLength(3);
      expect(decoder.decode(q.body)).toBe(decoder.decode(sent.body));
      expect(q.headers).toMatchObject(sent.headers ?? {});
      const h = q.history;
      expect(h.reason).toBe('attempts_exhausted');
      expect(h.attempts).toBe(3);
      expect(h.lastError).toEqual({
        name: 'Error',
        code: 'ECONNRESET',
        message: 'connection reset (attempt 3)',
      });
      expect(h.source).toBe(t.harness.source.name);
      expect(h.idempotencyKey).toBe(key);
      expect(h.firstFailureAt).toBeGreaterThanOrEqual(publishedAt);
      expect(h.firstFailureAt).toBeLessThanOrEqual(failures[1] as number);
      expect(h.lastFailureAt).toBeGreaterThanOrEqual(failures[2] as number);
      expect(h.quarantinedAt).toBeGreaterThanOrEqual(h.lastFailureAt);
      expect(t.settlesOf(id).map((s) => s.action)).toEqual([
        'retryLater',
        'retryLater',
        'quarantine',
      ]);
    });

    it('quarantines a non-retryable failure on its first failure', async () => {
      const t = await setup('non-retryable');
      const key = t.key('declined');
      let calls = 0;
      const c = t.consumer(async () => {
        calls += 1;
        throw new NonRetryableError('card declined', { code: 'CARD_DECLINED' });
      });
      await c.start();
      await t.harness.publish(message(key, { amount: 5 }));
      await t.waitFor('the quarantine', async () => (await t.quarantinedWith(key)).length === 1);
      const [q] = (await t.quarantinedWith(key)) as [QuarantinedMessage];
      expect(calls).toBe(1);
      expect(q.history).toMatchObject({
        reason: 'non_retryable',
        attempts: 1,
        lastError: { name: 'NonRetryableError', code: 'CARD_DECLINED', message: 'card declined' },
      });
    });

    it('runs one effect for a duplicate publication', async () => {
      const t = await setup('duplicate');
      const key = t.key('dup');
      const effects: string[] = [];
      const c = t.consumer(
        async (m) => {
          effects.push(m.id);
          return 'charged';
        },
        { concurrency: 2, prefetch: 2 },
      );
      await c.start();
      // The producer retried its publish: a new broker id, the same idempotency key and body.
      await t.harness.publish(message(key, { amount: 10 }, `${key}-a`));
      await t.harness.publish(message(key, { amount: 10 }, `${key}-b`));
      await t.waitFor(
        'both copies acked',
        () =>
          t.settlesOf(`${key}-a`).some((s) => s.action === 'ack') &&
          t.settlesOf(`${key}-b`).some((s) => s.action === 'ack'),
      );
      expect(effects).toHaveLength(1);
      const acked = t.events.filter((e) => e.type === 'acked' && e.key === key);
      expect(acked.map((e) => e.type === 'acked' && e.replayed).sort()).toEqual([false, true]);
    });

    it('redrives a quarantined message whose operation completed without a second effect', async () => {
      const t = await setup('redrive-completed');
      const key = t.key('paid');
      let failing = true;
      const effects: string[] = [];
      const c = t.consumer(async (m) => {
        if (failing) throw new NonRetryableError('ledger closed', { code: 'LEDGER_CLOSED' });
        effects.push(m.id);
        return 'ok';
      });
      await c.start();
      await t.harness.publish(message(key, { amount: 3 }, `${key}-a`));
      await t.waitFor('the quarantine', async () => (await t.quarantinedWith(key)).length === 1);
      failing = false;
      // Meanwhile the producer's retry went through and completed the operation.
      await t.harness.publish(message(key, { amount: 3 }, `${key}-b`));
      await t.waitFor('the second copy acked', () =>
        t.settlesOf(`${key}-b`).some((s) => s.action === 'ack'),
      );
      expect(effects).toEqual([`${key}-b`]);
      expect(await redrive(t.harness.dlq, { idempotencyKey: key })).toBe(1);
      await t.waitFor('the redriven copy acked', () =>
        t.settlesOf(`${key}-a`).some((s) => s.action === 'ack'),
      );
      expect(effects).toEqual([`${key}-b`]);
      expect(await t.quarantinedWith(key)).toEqual([]);
      const last = t.events.filter((e) => e.type === 'acked' && e.id === `${key}-a`);
      expect(last.map((e) => e.type === 'acked' && e.replayed)).toEqual([true]);
    });

    it('redrives a quarantined message whose operation never completed, and runs it once', async () => {
      const t = await setup('redrive-rerun');
      const key = t.key('fixed');
      let failing = true;
      const effects: string[] = [];
      const c = t.consumer(async (m) => {
        if (failing) throw new NonRetryableError('bug in handler');
        effects.push(m.id);
      });
      await c.start();
      await t.harness.publish(message(key, { v: 1 }));
      await t.waitFor('the quarantine', async () => (await t.quarantinedWith(key)).length === 1);
      failing = false;
      expect(await redrive(t.harness.dlq, { idempotencyKey: key })).toBe(1);
      await t.waitFor('the ack', () => t.settlesOf(`${key}-m`).some((s) => s.action === 'ack'));
      expect(effects).toEqual([`${key}-m`]);
      const [q] = await t.harness.dlq.list({ idempotencyKey: key });
      expect(q).toBeUndefined();
    });

    it('loses nothing and runs one effect when a consumer dies mid-handler', async () => {
      const t = await setup('crash');
      const key = t.key('crash');
      const id = `${key}-m`;
      const { harness } = t;
      if (!harness.child && !harness.crash) {
        throw new Error('the harness must provide child (a real process) or crash (in process)');
      }
      const effectsFile = join(mkdtempSync(join(tmpdir(), 'reprocess-conf-')), 'effects.log');
      appendFileSync(effectsFile, '');
      const effects = () => readFileSync(effectsFile, 'utf8').split('\n').filter(Boolean);
      const charge = (ctx: IdempotencyContext, m: { id: string }) =>
        ctx.step('effect', () => {
          appendFileSync(effectsFile, `${m.id}\n`);
          return true;
        });
      await harness.publish(message(key, { amount: 99 }));

      if (harness.child) {
        const child = startChild(harness.child, effectsFile, leaseMs);
        try {
          await child.started;
        } finally {
          child.process.kill('SIGKILL');
        }
        await child.exited;
      } else {
        const frozen = freezable(t.store);
        let started = false;
        const doomed = t.consumer(
          async (m, ctx) => {
            await charge(ctx, m);
            started = true;
            await new Promise(() => undefined); // dies here
          },
          { idempotency: { store: frozen.store, operation: OPERATION, lease: leaseMs } },
        );
        await doomed.start();
        await t.waitFor('the doomed handler', () => started);
        frozen.freeze(); // its heartbeats and writes never reach the store again
        await harness.crash?.();
        await doomed.stop({ timeoutMs: 0 });
      }
      expect(effects()).toEqual([id]);

      const source = harness.reconnect ? await harness.reconnect() : harness.source;
      let resumed: boolean | undefined;
      const survivor = t.consumer(
        async (m, ctx) => {
          resumed = ctx.resumed;
          await charge(ctx, m);
        },
        { source },
      );
      await survivor.start();
      await t.waitFor(
        'the ack after takeover',
        () => t.settlesOf(id).some((s) => s.action === 'ack'),
        waitTimeoutMs + leaseMs * 3,
      );
      expect(effects()).toEqual([id]);
      expect(resumed).toBe(true);
      expect(await t.quarantinedWith(key)).toEqual([]);
      rmSync(effectsFile, { force: true });
    });

    it('survives a dropped connection mid-stream: nothing lost, no effect twice', async () => {
      const t = await setup('connection-drop');
      const { harness } = t;
      if (!harness.dropConnection) {
        throw new Error('the harness must provide dropConnection (the memory source: interrupt())');
      }
      const key = t.key('drop');
      const gate = deferred();
      const effects: string[] = [];
      let first = true;
      const c = t.consumer(
        async (m, ctx) => {
          if (first) {
            first = false;
            await gate.promise; // still running when the connection drops
          }
          await ctx.step('effect', () => {
            effects.push(m.id);
            return true;
          });
        },
        { concurrency: 2, prefetch: 2 },
      );
      await c.start();
      await harness.publish(message(`${key}-0`, { i: 0 }));
      await t.waitFor('the first delivery', () => t.trace.deliveries.length === 1);
      await harness.dropConnection();
      gate.resolve();
      for (let i = 1; i < 4; i++) await harness.publish(message(`${key}-${i}`, { i }));
      const ids = [0, 1, 2, 3].map((i) => `${key}-${i}-m`);
      await t.waitFor('all four acked after the reconnect', () =>
        ids.every((id) => t.events.some((e) => e.type === 'acked' && e.id === id)),
      );
      expect([...effects].sort()).toEqual(ids);
      expect(await t.harness.dlq.list()).toEqual([]);
    });

    it('quarantines an unparseable body as poison and keeps consuming', async () => {
      const t = await setup('poison');
      const key = t.key('poison');
      const good = t.key('good');
      const seen: string[] = [];
      const c = t.consumer(async (m) => {
        seen.push(m.id);
      });
      await c.start();
      await t.harness.publish({
        id: `${key}-json`,
        body: encoder.encode('{"amount": 1,'),
        headers: { 'idempotency-key': key },
      });
      await t.harness.publish({
        id: `${key}-utf8`,
        body: new Uint8Array([0xff, 0xfe, 0x7b]),
        headers: { 'idempotency-key': `${key}-2` },
      });
      await t.harness.publish(message(good, { ok: true }));
      await t.waitFor('the good message', () => seen.includes(`${good}-m`));
      await t.waitFor('both poison messages quarantined', async () => {
        const all = await t.harness.dlq.list();
        return all.filter((q) => q.history.idempotencyKey?.startsWith(key)).length === 2;
      });
      const [json] = (await t.quarantinedWith(key)) as [QuarantinedMessage];
      expect(json.history).toMatchObject({ reason: 'poison', attempts: 1 });
      expect(json.history.lastError.code).toBe('POISON_MESSAGE');
      expect(json.history.lastError.message).toMatch(/not valid JSON/);
      expect(decoder.decode(json.body)).toBe('{"amount": 1,');
      const [utf8] = (await t.quarantinedWith(`${key}-2`)) as [QuarantinedMessage];
      expect(utf8.history.lastError.message).toMatch(/not valid UTF-8/);
      expect([...utf8.body]).toEqual([0xff, 0xfe, 0x7b]);
      expect(seen).toEqual([`${good}-m`]);
    });

    it('quarantines a message without its idempotency key, handler not run', async () => {
      const t = await setup('missing-key');
      const tag = t.key('nokey');
      let calls = 0;
      const c = t.consumer(
        async () => {
          calls += 1;
        },
        { key: 'headers.order-key' },
      );
      await c.start();
      await t.harness.publish({
        id: tag,
        body: encoder.encode('{"amount":1}'),
        headers: { 'x-tag': tag },
      });
      await t.waitFor('the quarantine', async () => {
        const all = await t.harness.dlq.list();
        return all.some((q) => q.headers['x-tag'] === tag);
      });
      const q = (await t.harness.dlq.list()).find((m) => m.headers['x-tag'] === tag);
      expect(q?.history.reason).toBe('key_missing');
      expect(q?.history.lastError.code).toBe('IDEMPOTENCY_KEY_MISSING');
      expect(q?.history.lastError.message).toMatch(/headers\.order-key/);
      expect(q?.history.idempotencyKey).toBeUndefined();
      expect(calls).toBe(0);
    });

    it('handles an enormous message once, bytes intact', async () => {
      const t = await setup('large');
      const key = t.key('large');
      const pad = 'x'.repeat(Math.max(0, largeBytes - 20));
      const sent = message(key, { pad });
      const got: Array<[number, number]> = [];
      const c = t.consumer<{ pad: string }>(async (m) => {
        got.push([m.raw.byteLength, m.body.pad.length]);
      });
      await c.start();
      await t.harness.publish(sent);
      await t.waitFor('the ack', () => t.settlesOf(`${key}-m`).some((s) => s.action === 'ack'));
      expect(got).toEqual([[sent.body.byteLength, pad.length]]);
    });

    it('never holds more than prefetch unsettled, nor runs more than concurrency', async () => {
      const t = await setup('backpressure');
      const key = t.key('bp');
      let running = 0;
      let maxRunning = 0;
      const gate = deferred();
      const done: string[] = [];
      const c = t.consumer(
        async (m) => {
          running += 1;
          maxRunning = Math.max(maxRunning, running);
          await gate.promise;
          running -= 1;
          done.push(m.id);
        },
        { concurrency: 2, prefetch: 3 },
      );
      for (let i = 0; i < 8; i++) await t.harness.publish(message(`${key}-${i}`, { i }));
      await c.start();
      await t.waitFor('three deliveries', () => t.trace.deliveries.length >= 3);
      await t.pause(base * 3);
      expect(t.trace.deliveries).toHaveLength(3);
      expect(running).toBe(2);
      gate.resolve();
      await t.waitFor('all eight', () => done.length === 8);
      expect(t.trace.maxUnsettled).toBeLessThanOrEqual(3);
      expect(maxRunning).toBe(2);
    });

    it('stops gracefully: in-flight finishes and acks, waiting ones go back unacked', async () => {
      const { t, key, done } = await stoppedWithOneWaiting('stop');
      expect(done).toEqual([`${key}-1-m`]);
      expect(t.settlesOf(`${key}-1-m`).map((s) => s.action)).toEqual(['ack']);
      expect(t.settlesOf(`${key}-2-m`).every((s) => s.action === 'release')).toBe(true);

      await t.harness.source.close();
      const source = t.harness.reconnect ? await t.harness.reconnect() : t.harness.source;
      const next = t.consumer(
        async (m) => {
          done.push(m.id);
        },
        { source },
      );
      await next.start();
      await t.waitFor('the released message', () => done.length === 2);
      expect(done).toEqual([`${key}-1-m`, `${key}-2-m`]);
    });

    it('starts again after a stop, on the same source: what waited and what comes later each run once', async () => {
      const { t, key, done, consumer: c } = await stoppedWithOneWaiting('restart');
      await c.start();
      await t.harness.publish(message(`${key}-3`, { i: 3 }));
      await t.waitFor('the released and the new message', () => done.length === 3);
      await t.pause(base * 3);
      expect(done.sort()).toEqual([`${key}-1-m`, `${key}-2-m`, `${key}-3-m`]);
      for (const i of [1, 2, 3]) {
        expect(t.settlesOf(`${key}-${i}-m`).filter((s) => s.action === 'ack')).toHaveLength(1);
      }
    });

    it('starts again after a stop that came while its first start still connected', async () => {
      const t = await setup('early-stop');
      const key = t.key('early');
      const done: string[] = [];
      const c = t.consumer(async (m) => {
        done.push(m.id);
      });
      // A SIGTERM at boot: stopped before the source had connected.
      const first = c.start();
      await c.stop({ timeoutMs: waitTimeoutMs });
      await first;
      await c.start();
      await t.harness.publish(message(key, { i: 1 }));
      await t.waitFor('the message', () => done.length === 1);
      expect(done).toEqual([`${key}-m`]);
    });

    it('gives back a handler that outlives the stop bound, unacked, and it runs once later', async () => {
      const t = await setup('stop-timeout');
      const key = t.key('slow');
      const id = `${key}-m`;
      const effects: string[] = [];
      let startedSlow = false;
      const c = t.consumer(async (m) => {
        startedSlow = true;
        // Cooperative: gives up when the consumer's stop bound passes.
        await new Promise((_, reject) => {
          m.signal.addEventListener('abort', () => reject(m.signal.reason), { once: true });
        });
      });
      await c.start();
      await t.harness.publish(message(key, { slow: true }));
      await t.waitFor('the slow handler', () => startedSlow);
      const stopping = c.stop({ timeoutMs: base });
      await t.pause(base);
      expect(await stopping).toEqual({ finished: 0, released: 1, settling: 0 });
      expect(t.settlesOf(id).some((s) => s.action === 'ack')).toBe(false);

      await t.harness.source.close();
      const source = t.harness.reconnect ? await t.harness.reconnect() : t.harness.source;
      const next = t.consumer(
        async (m) => {
          effects.push(m.id);
        },
        { source },
      );
      await next.start();
      await t.waitFor('the redelivery', () => effects.length === 1, waitTimeoutMs + leaseMs * 3);
      expect(effects).toEqual([id]);
    });
  });
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Wraps a source so that every delivery and settling call is recorded with its time. */
function instrument(source: MessageSource, clock: Clock, trace: Trace): MessageSource {
  return {
    name: source.name,
    start(onDelivery, options) {
      return source.start((delivery) => {
        trace.deliveries.push({
          id: delivery.id,
          deliveryCount: delivery.deliveryCount,
          at: clock.now(),
        });
        trace.unsettled += 1;
        trace.maxUnsettled = Math.max(trace.maxUnsettled, trace.unsettled);
        return onDelivery(wrap(delivery));
      }, options);
    },
    stop: () => source.stop(),
    close: () => source.close(),
  };

  function wrap(delivery: Delivery): Delivery {
    let settled = false;
    const record = (action: string, delayMs?: number) => {
      if (!settled) {
        settled = true;
        trace.unsettled -= 1;
      }
      trace.settles.push({
        id: delivery.id,
        action,
        at: clock.now(),
        ...(delayMs === undefined ? {} : { delayMs }),
      });
    };
    const wrapped: Delivery = {
      id: delivery.id,
      body: delivery.body,
      headers: delivery.headers,
      source: delivery.source,
      deliveryCount: delivery.deliveryCount,
      publishedAt: delivery.publishedAt,
      ack() {
        record('ack');
        return delivery.ack();
      },
      retryLater(delayMs) {
        record('retryLater', delayMs);
        return delivery.retryLater(delayMs);
      },
      quarantine(history) {
        record('quarantine');
        return delivery.quarantine(history);
      },
    };
    if (delivery.touch) wrapped.touch = () => (delivery.touch as () => Promise<void>)();
    if (delivery.release) {
      const release = delivery.release.bind(delivery);
      wrapped.release = () => {
        record('release');
        return release();
      };
    }
    return wrapped;
  }
}

/** A store whose calls, once frozen, never answer: the view of a process that died. */
function freezable(store: IdempotencyStore): { store: IdempotencyStore; freeze(): void } {
  let frozen = false;
  const never = new Promise<never>(() => undefined);
  const proxy = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => (frozen ? never : value.apply(target, args));
    },
  });
  return {
    store: proxy,
    freeze() {
      frozen = true;
    },
  };
}

/** Starts the conformance child consumer; `started` resolves once its handler ran the effect. */
function startChild(
  child: { module: string; args?: unknown },
  effectsFile: string,
  leaseMs: number,
): { process: ChildProcess; started: Promise<void>; exited: Promise<void> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD_RUNNER], {
    env: {
      ...process.env,
      REPROCESS_CONFORMANCE_CHILD: JSON.stringify({
        module: child.module,
        args: child.args ?? null,
        effectsFile,
        operation: OPERATION,
        leaseMs,
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const started = new Promise<void>((resolve, reject) => {
    proc.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('STARTED')) resolve();
    });
    proc.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    proc.once('exit', (code) => reject(new Error(`child consumer exited (${code}): ${output}`)));
    setTimeout(() => reject(new Error(`child consumer did not start: ${output}`)), 30_000).unref();
  });
  const exited = new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    else proc.once('exit', () => resolve());
  });
  return { process: proc, started, exited };
}
