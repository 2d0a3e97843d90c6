export {
  HISTORY_ATTRIBUTE,
  MAX_MESSAGE_ATTRIBUTES,
  MAX_VISIBILITY_SECONDS,
  sqsHandler,
  visibilitySeconds,
  type SqsHandler,
  type SqsHandlerOptions,
} from './sqs-handler.js';
export {
  parseQueueArn,
  queueUrlOf,
  type SqsBatchResponse,
  type SqsEventLike,
  type SqsEventMessageAttribute,
  type SqsQueueRef,
  type SqsRecordLike,
} from './sqs-event.js';
export type {
  ChangeVisibilityInput,
  SdkMessageAttribute,
  SendMessageInput,
  SqsClientLike,
} from './sqs-client.js';
