export {
  createConsumer,
  type Consumer,
  type ConsumerOptions,
  type ConsumerState,
  type ConsumerStats,
  type StopResult,
} from './consumer.js';
export {
  createMessageProcessor,
  FIRST_FAILURE_STEP,
  type ConsumerIdempotencyOptions,
  type ConsumerMessage,
  type DeliveryControl,
  type DeliveryResult,
  type MessageHandler,
  type MessageProcessingOptions,
  type MessageProcessor,
  type QuarantineOptions,
} from './message-processor.js';
export type {
  ConsumerEvent,
  ConsumerEventListener,
  RetryReason,
  SettleAction,
} from './events.js';
export {
  DEFAULT_MESSAGE_KEY,
  keyReader,
  type MessageKeyInput,
  type MessageKeySource,
} from './message-key.js';
export { bodyParser, type BodyParser } from './parse-body.js';
export {
  createMemorySource,
  type MemoryBody,
  type MemoryDeliveryRecord,
  type MemoryMessage,
  type MemorySettlement,
  type MemorySource,
  type MemorySourceOptions,
  type MemorySourceStats,
} from './memory-source.js';
export {
  createMemoryDeadLetterQueue,
  type MemoryDeadLetterQueue,
  type MemoryDeadLetterQueueOptions,
  type MemoryQuarantinedMessage,
  type Republish,
} from './memory-dead-letter-queue.js';
export { redrive, type RedriveFilter } from './redrive.js';
export { checkQuarantineFilter, matchesFilter } from './quarantine-filter.js';
export type * from './types.js';
