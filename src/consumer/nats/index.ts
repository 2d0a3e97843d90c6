/**
 * `reprocess/nats`: the NATS JetStream adapter of the consumer runtime. A durable pull
 * consumer source with `nak(delay)` backoff, `working()` while a handler runs, and quarantine
 * to a dead-letter stream; the dead-letter stream for listing and redrive; topology helpers.
 */
export {
  createJetStreamDeadLetterQueue,
  type JetStreamDeadLetterQueue,
  type JetStreamDeadLetterQueueOptions,
  type JetStreamDeadLetterQueueSettings,
} from './jetstream-dead-letter-queue.js';
export {
  JetStreamErrorCode,
  JetStreamPublishError,
  JetStreamSettleError,
} from './jetstream-errors.js';
export {
  createJetStreamSource,
  type JetStreamSource,
  type JetStreamSourceOptions,
  type JetStreamSourceSettings,
} from './jetstream-source.js';
export {
  declareJetStreamTopology,
  deleteJetStreamTopology,
  MAX_DELIVER_MARGIN,
  resolveJetStreamTopology,
  type JetStreamTopology,
  type JetStreamTopologyOptions,
} from './jetstream-topology.js';
export type { NatsConnectionOptions } from './nats-connection.js';
