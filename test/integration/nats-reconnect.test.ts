import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createJetStreamSource,
  declareJetStreamTopology,
  deleteJetStreamTopology,
  resolveJetStreamTopology,
} from '../../src/consumer/nats/index.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { publishJs, testNats } from './fixtures/broker-nats.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';
import { cutMidStream } from './fixtures/broker-reconnect.js';

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
    await cutMidStream({
      source: createJetStreamSource({
        servers: `nats://127.0.0.1:${proxy.port}`,
        stream,
        durable: 'worker',
        ackWait: '1s',
      }),
      proxy,
      consumer: { touchIntervalMs: 300 },
      publish: (i) =>
        publishJs(nc, `${stream}.orders`, JSON.stringify({ i }), {
          msgID: `m-${i}`,
          headers: { 'idempotency-key': `k-${i}` },
        }),
      outstanding: async () => {
        const info = await jsm.consumers.info(stream, 'worker');
        return info.num_pending + info.num_ack_pending;
      },
      checkEvents: (events) => {
        // Acks written into the dying socket never arrived: JetStream redelivered those after
        // AckWait, and they replayed instead of running again.
        expect(events.some((e) => e.type === 'quarantined')).toBe(false);
      },
    });
    await deleteJetStreamTopology(jsm, topology);
  });
});
