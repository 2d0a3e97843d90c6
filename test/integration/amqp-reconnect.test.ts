import type { ChannelModel } from 'amqplib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createAmqpSource,
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../../src/consumer/amqp/index.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { publishTo, readyCount, testConnection } from './fixtures/broker-amqp.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';
import { cutMidStream } from './fixtures/broker-reconnect.js';

const TIERS = ['100ms', '300ms'];

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
    await cutMidStream({
      source: createAmqpSource({
        url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
        queue,
        delayTiers: TIERS,
      }),
      proxy,
      publish: (i) =>
        publishTo(admin, queue, JSON.stringify({ i }), {
          messageId: `m-${i}`,
          headers: { 'idempotency-key': `k-${i}` },
        }),
      // Ready messages only: one left unacked is back in the queue once the consumer closed,
      // where the last check sees it.
      outstanding: () => readyCount(admin, queue),
      checkEvents: (events) => {
        // The cut landed mid-stream: settles on the dead channel were refused, or acks written
        // into the dying socket never arrived; either way the broker redelivered and they replayed.
        const refused = events.filter((e) => e.type === 'settle_failed');
        const replayed = events.filter((e) => e.type === 'acked' && e.replayed);
        expect(refused.length + replayed.length).toBeGreaterThan(0);
      },
    });
    await deleteAmqpTopology(admin, topology);
  });
});
