import { ReprocessError } from '../../errors.js';

/** Stable codes of the RabbitMQ adapter's errors. */
export const AmqpErrorCode = {
  CHANNEL_LOST: 'AMQP_CHANNEL_LOST',
  PUBLISH_FAILED: 'AMQP_PUBLISH_FAILED',
} as const;

/**
 * The channel that delivered this message is gone (the connection dropped or the broker
 * closed it), so it can no longer be settled. Nothing is lost: RabbitMQ puts every unacked
 * message of a closed channel back in its queue and delivers it again. Retryable.
 */
export class AmqpChannelLostError extends ReprocessError {
  constructor(message: string, cause?: unknown) {
    super(AmqpErrorCode.CHANNEL_LOST, message, { cause, defaultRetryable: true });
  }
}

/**
 * A publish reprocess needed confirmed (a delay-tier copy, a quarantine, a redrive) was not:
 * the broker nacked it, returned it as unroutable, or the channel closed before the confirm.
 * The source message was left unacked. Retryable.
 */
export class AmqpPublishError extends ReprocessError {
  constructor(message: string, cause?: unknown) {
    super(AmqpErrorCode.PUBLISH_FAILED, message, { cause, defaultRetryable: true });
  }
}
