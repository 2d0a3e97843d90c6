import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import {
  createAmqpDeadLetterQueue,
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../src/consumer/amqp/index.js';
import { type PhaseBroker, encodeOrder } from './phase-broker.js';

const run = promisify(execFile);

/**
 * Short delay tiers: the run's retry policy waits 100 ms to 1 s, and an "in progress
 * elsewhere" hint is at most the lease (2 s by default), rounded up to 3 s.
 */
export const AMQP_TIERS = ['100ms', '300ms', '1s', '3s'] as const;

/**
 * The RabbitMQ side of a phase: a quorum queue `chaos.<run>.orders` with its delay tiers and
 * dead-letter queue. Workers name their connections `chaos-<run>-amqp-<worker>`, which is how
 * `closeFromServer` finds them in `rabbitmqctl list_connections`.
 */
export async function createAmqpBroker(url: string, runId: string): Promise<PhaseBroker> {
  const admin = await connect(url);
  admin.on('error', () => {});
  const queue = `chaos.${runId}.orders`;
  const topology = resolveAmqpTopology({ queue, delayTiers: [...AMQP_TIERS] });
  const dlq = createAmqpDeadLetterQueue({ connection: admin, queue });
  const namePrefix = `chaos-${runId}-amqp-`;
  const port = Number(new URL(url).port || 5672);

  return {
    kind: 'amqp',
    source: queue,
    port,

    async declare() {
      await declareAmqpTopology(admin, topology);
    },

    async publish(publications) {
      const channel = await admin.createConfirmChannel();
      try {
        let unconfirmed = 0;
        for (const publication of publications) {
          const { id, body, headers } = encodeOrder(publication);
          channel.sendToQueue(queue, body, {
            persistent: true,
            messageId: id,
            contentType: 'application/json',
            timestamp: Date.now(),
            headers,
          });
          unconfirmed += 1;
          if (unconfirmed >= 256) {
            await channel.waitForConfirms();
            unconfirmed = 0;
          }
        }
        await channel.waitForConfirms();
      } finally {
        await channel.close().catch(() => undefined);
      }
    },

    workerConfig(relayPort, name) {
      const relayed = new URL(url);
      relayed.hostname = '127.0.0.1';
      relayed.port = String(relayPort);
      return {
        kind: 'amqp',
        url: relayed.toString(),
        queue,
        delayTiers: [...AMQP_TIERS],
        connectionName: `${namePrefix}${name}`,
      };
    },

    // rabbitmqctl (CONNECTION_FORCED from the broker itself), for this run's workers only.
    async closeFromServer() {
      const { stdout } = await run(
        'rabbitmqctl',
        ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers'],
        { timeout: 30_000 },
      );
      const pids = stdout
        .split('\n')
        .filter((line) => line.includes(`{"connection_name","${namePrefix}`))
        .map((line) => line.split('\t')[0] ?? '')
        .filter((pid) => pid.startsWith('<'));
      const closed = await Promise.all(
        pids.map((pid) =>
          run('rabbitmqctl', ['close_connection', pid, 'chaos run: closed by the broker'], {
            timeout: 30_000,
          }).then(
            () => 1,
            () => 0, // gone already (its worker was killed meanwhile)
          ),
        ),
      );
      return closed.reduce<number>((a, b) => a + b, 0);
    },

    deadLetters: dlq,
    deadLetterCount: () => dlq.count(),
    listDeadLetters: () => dlq.list(),

    async close({ keep }) {
      try {
        if (!keep) await deleteAmqpTopology(admin, topology);
      } finally {
        await admin.close().catch(() => undefined);
      }
    },
  };
}
