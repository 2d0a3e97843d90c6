import type { ChannelModel } from 'amqplib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createAmqpSource,
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../../src/consumer/amqp/index.js';
import { createConsumer } from '../../src/consumer/consumer.js';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { publishTo, readyCount, testConnection } from './fixtures/broker-amqp.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';

const TIERS = ['100ms', '300ms'];

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 20_000) {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

await describeWithService('rabbitmq', 'RabbitMQ consumer across a dropped connection', () => {
  let admin: ChannelModel;
  beforeAll(async () => {
    admin = await testConnection();
  });
  afterAll(async () => {
    await admin.close();
  });

  it('cut mid-stream: reconnects, loses nothing, and every message has exactly one effect', async () => {
    const queue = `${RUN_ID}.reconnect`;
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
    await declareAmqpTopology(admin, topology);
    const proxy = await startTcpProxy(5672);
    const source = createAmqpSource({
      url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
      queue,
      delayTiers: TIERS,
    });
    const effects = new Map<string, number>();
    const events: ConsumerEvent[] = [];
    const consumer = createConsumer({
      source,
      idempotency: { store: createMemoryStore(), operation: 'reconnect', lease: 1000 },
      retry: { maxAttempts: 20, backoff: 'constant', base: 100, cap: 300, jitter: 'none' },
      concurrency: 4,
      prefetch: 8,
      onEvent: (e) => events.push(e),
      handler: async (message, ctx) => {
        const key = message.headers['idempotency-key'] as string;
        await ctx.step('effect', async () => {
          effects.set(key, (effects.get(key) ?? 0) + 1);
        });
        await new Promise((r) => setTimeout(r, 20));
      },
    });
    const total = 60;
    try {
      for (let i = 0; i < total; i++) {
        await publishTo(admin, queue, JSON.stringify({ i }), {
          messageId: `m-${i}`,
          headers: { 'idempotency-key': `k-${i}` },
        });
      }
      await consumer.start();
      await waitFor('a third done', () => effects.size >= total / 3);
      expect(proxy.dropAll()).toBeGreaterThanOrEqual(1);
      expect(effects.size).toBeLessThan(total); // cut mid-stream, not after the end
      await waitFor('every message', () => effects.size === total);
      await waitFor('every message acked', async () => {
        const acked = new Set(events.flatMap((e) => (e.type === 'acked' ? [e.id] : [])));
        return acked.size === total && (await readyCount(admin, queue)) === 0;
      });
      expect([...effects.values()].every((n) => n === 1)).toBe(true);
      // The cut landed mid-stream: settles on the dead channel were refused, or acks written
      // into the dying socket never arrived; either way the broker redelivered and they replayed.
      const refused = events.filter((e) => e.type === 'settle_failed');
      const replayed = events.filter((e) => e.type === 'acked' && e.replayed);
      expect(refused.length + replayed.length).toBeGreaterThan(0);
    } finally {
      await consumer.stop({ timeoutMs: 1000 });
      await source.close();
      await proxy.close();
    }
    // Nothing was left unacked: closing would have put it back in the queue.
    expect(await readyCount(admin, queue)).toBe(0);
    await deleteAmqpTopology(admin, topology);
  });
});
