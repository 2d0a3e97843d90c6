import { ReprocessError } from '../../errors.js';

/** Stable codes of the JetStream adapter's errors. */
export const JetStreamErrorCode = {
  SETTLE_FAILED: 'JETSTREAM_SETTLE_FAILED',
  PUBLISH_FAILED: 'JETSTREAM_PUBLISH_FAILED',
} as const;

/**
 * An ack, nak, term or working signal could not be sent (the connection is closed), or the
 * dead-letter publish of a quarantine was not acknowledged. The message stays unacked and
 * JetStream redelivers it after AckWait. Retryable.
 */
export class JetStreamSettleError extends ReprocessError {
  constructor(message: string, cause?: unknown) {
    super(JetStreamErrorCode.SETTLE_FAILED, message, { cause, defaultRetryable: true });
  }
}

/** A redrive publish was not acknowledged by JetStream; the message stays in the dead-letter stream. */
export class JetStreamPublishError extends ReprocessError {
  constructor(message: string, cause?: unknown) {
    super(JetStreamErrorCode.PUBLISH_FAILED, message, { cause, defaultRetryable: true });
  }
}
