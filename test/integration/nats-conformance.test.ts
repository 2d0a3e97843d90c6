import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll } from 'vitest';
import {
  type JetStreamSource,
  createJetStreamDeadLetterQueue,
  createJetStreamSource,
  declareJetStreamTopology,
  deleteJetStreamTopology,
  resolveJetStreamTopology,
} from '../../src/consumer/nats/index.js';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';
import { describeConsumerConformance } from '../helpers/consumer-conformance.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { NATS_URL, publishJs, testNats } from './fixtures/broker-nats.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';
import type { BrokerWorkerArgs } from './fixtures/broker-worker.js';

// Short enough that a killed consumer's message comes back within the suite's wait.
const ACK_WAIT = '3s';
const WORKER = fileURLToPath(new URL('./fixtures/broker-worker.ts', import.meta.url));

await describeWithService('nats', 'NATS JetStream adapter', () => {
  let admin: { nc: NatsConnection; jsm: JetStreamManager } | undefined;
  afterAll(async () => {
    await admin?.nc.close();
  });

  describeConsumerConformance(
    'nats jetstream (durable pull consumer, nak delays, SQLite store)',
    async ({ id }) => {
      admin ??= await testNats();
      const { nc, jsm } = admin;
      const stream = `${RUN_ID}_C${id}`;
      const durable = 'conformance';
      const subject = `${stream}.orders`;
      const topology = resolveJetStreamTopology({ stream, durable, ackWait: ACK_WAIT });
      await declareJetStreamTopology(jsm, topology);
      const dir = mkdtempSync(join(tmpdir(), 'reprocess-nats-conf-'));
      const storePath = join(dir, 'idempotency.sqlite');
      const store = createSqliteStore({ path: storePath });
      // Consumers reach the server through a TCP relay, so a case can cut their connection.
      const proxy = await startTcpProxy(4222);
      const sources: JetStreamSource[] = [];
      const newSource = () => {
        const s = createJetStreamSource({
          servers: `nats://127.0.0.1:${proxy.port}`,
          stream,
          durable,
          ackWait: ACK_WAIT,
        });
        sources.push(s);
        return s;
      };
      const source = newSource();
      const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
      const args: BrokerWorkerArgs = {
        broker: 'nats',
        servers: NATS_URL,
        stream,
        durable,
        ackWait: ACK_WAIT,
        storePath,
      };
      return {
        source,
        dlq,
        store,
        async publish(message) {
          await publishJs(nc, subject, message.body, {
            headers: message.headers ?? {},
            ...(message.id === undefined ? {} : { msgID: message.id }),
          });
        },
        reconnect: async () => newSource(),
        async dropConnection() {
          if (proxy.dropAll() === 0) throw new Error('no consumer connection to drop');
        },
        child: { module: WORKER, args },
        async cleanup() {
          for (const s of sources) await s.close();
          await proxy.close();
          await dlq.close();
          await store.close();
          await deleteJetStreamTopology(jsm, topology);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
    { waitTimeoutMs: 15_000 },
  );
});
