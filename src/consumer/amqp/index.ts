/**
 * `reprocess/amqp`: the RabbitMQ adapter of the consumer runtime (amqplib). A source with
 * publisher-confirmed delayed redelivery through delay-tier queues and quarantine to a
 * dead-letter queue, the dead-letter queue for listing and redrive, and the topology helpers.
 */
export type {
  AmqpConnectionLike,
  AmqpConnectionOptions,
} from './amqp-connection.js';
export {
  createAmqpDeadLetterQueue,
  type AmqpDeadLetterQueue,
  type AmqpDeadLetterQueueOptions,
  type AmqpDeadLetterQueueSettings,
} from './amqp-dead-letter-queue.js';
export { AmqpChannelLostError, AmqpErrorCode, AmqpPublishError } from './amqp-errors.js';
export { timestampMs } from './amqp-delivery.js';
export {
  createAmqpSource,
  type AmqpSource,
  type AmqpSourceOptions,
  type AmqpSourceSettings,
} from './amqp-source.js';
export {
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
  type AmqpQueueType,
  type AmqpTopology,
  type AmqpTopologyOptions,
} from './amqp-topology.js';
export { DEFAULT_DELAY_TIERS, formatTier, pickDelayTier, type DelayTier } from './delay-tiers.js';
