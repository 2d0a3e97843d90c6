import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChannelModel } from 'amqplib';
import { afterAll } from 'vitest';
import {
  type AmqpSource,
  createAmqpDeadLetterQueue,
  createAmqpSource,
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../../src/consumer/amqp/index.js';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';
import { describeConsumerConformance } from '../helpers/consumer-conformance.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import {
  AMQP_URL,
  forceCloseConnections,
  publishTo,
  testConnection,
} from './fixtures/broker-amqp.js';
import type { BrokerWorkerArgs } from './fixtures/broker-worker.js';

// The suite's retry delays are 100 ms and 200 ms: tiers that hit them exactly, plus one more.
const TIERS = ['100ms', '200ms', '400ms'];
const WORKER = fileURLToPath(new URL('./fixtures/broker-worker.ts', import.meta.url));

await describeWithService('rabbitmq', 'RabbitMQ adapter', () => {
  let admin: ChannelModel | undefined;
  afterAll(async () => {
    await admin?.close();
  });

  describeConsumerConformance(
    'rabbitmq (quorum queues, delay tiers, SQLite store)',
    async ({ id }) => {
      admin ??= await testConnection();
      const connection = admin;
      const queue = `${RUN_ID}.conf.${id}`;
      const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
      await declareAmqpTopology(connection, topology);
      const dir = mkdtempSync(join(tmpdir(), 'reprocess-amqp-conf-'));
      const storePath = join(dir, 'idempotency.sqlite');
      const store = createSqliteStore({ path: storePath });
      const sources: AmqpSource[] = [];
      const newSource = () => {
        const s = createAmqpSource({
          url: AMQP_URL,
          queue,
          delayTiers: TIERS,
          connectionName: `${queue}-source-${sources.length}`,
        });
        sources.push(s);
        return s;
      };
      const source = newSource();
      const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
      const args: BrokerWorkerArgs = {
        broker: 'amqp',
        url: AMQP_URL,
        queue,
        delayTiers: TIERS,
        storePath,
      };
      return {
        source,
        dlq,
        store,
        async publish(message) {
          await publishTo(connection, queue, Buffer.from(message.body), {
            ...(message.id === undefined ? {} : { messageId: message.id }),
            headers: message.headers ?? {},
          });
        },
        reconnect: async () => newSource(),
        // RabbitMQ itself closes the consumer's connection (CONNECTION_FORCED).
        async dropConnection() {
          const closed = await forceCloseConnections(`${queue}-source-`, true);
          if (closed === 0) throw new Error('no consumer connection to drop');
        },
        child: { module: WORKER, args },
        async cleanup() {
          for (const s of sources) await s.close();
          await dlq.close();
          await store.close();
          await deleteAmqpTopology(connection, topology);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
    { largeMessageBytes: 4 * 1024 * 1024, lateToleranceMs: 1000 },
  );
});
