import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import {
  createJetStreamDeadLetterQueue,
  declareJetStreamTopology,
  deleteJetStreamTopology,
  resolveJetStreamTopology,
} from '../src/consumer/nats/index.js';
import { type PhaseBroker, encodeOrder } from './phase-broker.js';

/** AckWait of the run's consumer: how long a killed worker's deliveries stay with it. */
export const NATS_ACK_WAIT = '5s';

/**
 * The JetStream side of a phase: a work-queue stream `CHAOS_<RUN>` on subjects
 * `CHAOS_<RUN>.>`, its dead-letter stream, and one durable pull consumer every worker shares.
 *
 * MaxDeliver is unlimited (-1) on purpose: the runtime quarantines after `maxAttempts` failed
 * runs, but deliveries bounced without running (the store was down, the operation was in
 * progress elsewhere) count on JetStream's counter too, and past MaxDeliver JetStream stops
 * delivering a message silently. A store outage must not turn into lost messages.
 *
 * The NATS server here has no monitoring port and no system account, so the server cannot
 * be asked to close a client connection: connections are cut through the relay instead.
 */
export async function createNatsBroker(servers: string, runId: string): Promise<PhaseBroker> {
  const nc = await connect({ servers, name: `chaos-${runId}-admin` });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stream = `CHAOS_${runId.toUpperCase()}`;
  const durable = 'workers';
  const topology = resolveJetStreamTopology({
    stream,
    durable,
    ackWait: NATS_ACK_WAIT,
    maxDeliver: -1,
  });
  const dlq = createJetStreamDeadLetterQueue({ connection: nc, stream });
  const port = Number(
    new URL(servers.includes('://') ? servers : `nats://${servers}`).port || 4222,
  );

  return {
    kind: 'nats',
    source: stream,
    port,

    async declare() {
      await declareJetStreamTopology(jsm, topology);
    },

    async publish(publications) {
      const window = 128;
      for (let i = 0; i < publications.length; i += window) {
        await Promise.all(
          publications.slice(i, i + window).map((publication) => {
            const { id, body, headers } = encodeOrder(publication);
            const h = natsHeaders();
            for (const [name, value] of Object.entries(headers)) h.set(name, value);
            // A distinct Nats-Msg-Id per publication: JetStream must not deduplicate the
            // duplicate publications away, they are one of the faults.
            return js.publish(`${stream}.orders`, body, { msgID: id, headers: h });
          }),
        );
      }
    },

    workerConfig(relayPort, name) {
      return {
        kind: 'nats',
        servers: `nats://127.0.0.1:${relayPort}`,
        stream,
        durable,
        ackWait: NATS_ACK_WAIT,
        connectionName: `chaos-${runId}-nats-${name}`,
      };
    },

    closeFromServer: undefined,
    deadLetters: dlq,
    deadLetterCount: () => dlq.count(),
    listDeadLetters: () => dlq.list(),

    async close({ keep }) {
      try {
        if (!keep) await deleteJetStreamTopology(jsm, topology);
      } finally {
        await nc.close().catch(() => undefined);
      }
    },
  };
}
