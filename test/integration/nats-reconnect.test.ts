import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createJetStreamSource,
  declareJetStreamTopology,
  deleteJetStreamTopology,
  resolveJetStreamTopology,
} from '../../src/consumer/nats/index.js';
import { createConsumer } from '../../src/consumer/consumer.js';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { publishJs, testNats } from './fixtures/broker-nats.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 20_000) {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

await describeWithService('nats', 'JetStream consumer across a dropped connection', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  beforeAll(async () => {
    ({ nc, jsm } = await testNats());
  });
  afterAll(async () => {
    await nc.close();
  });

  it('cut mid-stream: reconnects, loses nothing, and every message has exactly one effect', async () => {
    const stream = `${RUN_ID}_RECONNECT`;
    // A short AckWait: an ack lost in the cut comes back after it.
    const topology = resolveJetStreamTopology({ stream, durable: 'worker', ackWait: '1s' });
    await declareJetStreamTopology(jsm, topology);
    const proxy = await startTcpProxy(4222);
    const source = createJetStreamSource({
      servers: `nats://127.0.0.1:${proxy.port}`,
      stream,
      durable: 'worker',
      ackWait: '1s',
    });
    const effects = new Map<string, number>();
    const events: ConsumerEvent[] = [];
    const consumer = createConsumer({
      source,
      idempotency: { store: createMemoryStore(), operation: 'reconnect', lease: 1000 },
      retry: { maxAttempts: 20, backoff: 'constant', base: 100, cap: 300, jitter: 'none' },
      concurrency: 4,
      prefetch: 8,
      touchIntervalMs: 300,
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
        await publishJs(nc, `${stream}.orders`, JSON.stringify({ i }), {
          msgID: `m-${i}`,
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
        const info = await jsm.consumers.info(stream, 'worker');
        return acked.size === total && info.num_pending === 0 && info.num_ack_pending === 0;
      });
      expect([...effects.values()].every((n) => n === 1)).toBe(true);
      // Acks written into the dying socket never arrived: JetStream redelivered those after
      // AckWait, and they replayed instead of running again.
      expect(events.some((e) => e.type === 'quarantined')).toBe(false);
    } finally {
      await consumer.stop({ timeoutMs: 1000 });
      await source.close();
      await proxy.close();
    }
    const info = await jsm.consumers.info(stream, 'worker');
    expect(info.num_pending + info.num_ack_pending).toBe(0);
    await deleteJetStreamTopology(jsm, topology);
  });
});
