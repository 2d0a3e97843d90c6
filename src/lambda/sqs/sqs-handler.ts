import { Buffer } from 'node:buffer';
import {
  type MessageProcessingOptions,
  PROCESSING_OPTIONS,
  createMessageProcessor,
} from '../../consumer/message-processor.js';
import { checkOptionNames, optionNames } from '../../option-names.js';
import type { Delivery, Headers, QuarantineHistory } from '../../consumer/types.js';
import { InvalidArgumentError } from '../../errors.js';
import {
  type SdkMessageAttribute,
  type SendMessageInput,
  type SqsCalls,
  type SqsClientLike,
  sqsCalls,
} from './sqs-client.js';
import {
  type SqsBatchResponse,
  type SqsEventLike,
  type SqsQueueRef,
  type SqsRecordLike,
  checkSqsEvent,
  parseQueueArn,
  queueUrlOf,
} from './sqs-event.js';

/*
 * One Lambda invocation = one batch. Each record runs through the same message processor
 * as a queue consumer (idempotent handler, then ack / retry later / quarantine), and the
 * settling calls map onto SQS:
 *
 *   ack          → the record is left out of batchItemFailures (Lambda deletes it)
 *   retryLater   → reported failed, and ChangeMessageVisibility(backoff) when a client is
 *                  given: SQS has no per-message redelivery delay, the visibility timeout is it
 *   quarantine   → SendMessage to deadLetterQueueUrl (payload and attributes untouched, plus
 *                  the history attribute), then treated as done; without a dead-letter queue
 *                  it is reported failed and left to the queue's own redrive policy
 *
 * FIFO queues: records of one message group run in order, one at a time; after the first
 * failure in a group every later record of that group in the batch is reported failed
 * without running, so the group's order holds on redelivery.
 */

/** Message attribute that carries the quarantine history on the dead-letter queue. */
export const HISTORY_ATTRIBUTE = 'reprocess-history';
/** Longest visibility timeout SQS accepts: 12 hours. */
export const MAX_VISIBILITY_SECONDS = 43_200;
/** Most message attributes SQS allows on one message. */
export const MAX_MESSAGE_ATTRIBUTES = 10;

/** Options of {@link sqsHandler}: what to run per message, plus the SQS side. */
export interface SqsHandlerOptions<B = unknown> extends MessageProcessingOptions<B> {
  /**
   * An `SQSClient` (@aws-sdk/client-sqs). With it, a failed message's visibility timeout is
   * set to its backoff delay; without it the queue's visibility timeout applies.
   */
  sqs?: SqsClientLike;
  /** The source queue's URL (default: built from each record's `eventSourceARN`). */
  queueUrl?: string | ((queue: SqsQueueRef) => string);
  /**
   * Where quarantined messages are sent, with the history in the `reprocess-history`
   * attribute (JSON). Needs `sqs`. Without it, they are reported failed and the queue's
   * redrive policy moves them after `maxReceiveCount` receives.
   */
  deadLetterQueueUrl?: string;
  /** Records (standard queues) or message groups (FIFO) processed at once (default 10). */
  concurrency?: number;
}

/** The Lambda handler {@link sqsHandler} returns. */
export type SqsHandler = (event: SqsEventLike, context?: unknown) => Promise<SqsBatchResponse>;

const encoder = new TextEncoder();
const NEVER_ABORTED = new AbortController().signal;

const SQS_HANDLER_OPTIONS = optionNames<SqsHandlerOptions>({
  ...PROCESSING_OPTIONS,
  sqs: true,
  queueUrl: true,
  deadLetterQueueUrl: true,
  concurrency: true,
});

/**
 * Wraps a message handler into a Lambda SQS handler that returns a partial batch response
 * (`{ batchItemFailures }`; enable `ReportBatchItemFailures` on the event source mapping).
 */
export function sqsHandler<B = unknown>(options: SqsHandlerOptions<B>): SqsHandler {
  if (typeof options === 'object' && options !== null) {
    checkOptionNames('sqsHandler', options, SQS_HANDLER_OPTIONS);
  }
  const processor = createMessageProcessor(options);
  const calls: SqsCalls | undefined = options.sqs === undefined ? undefined : sqsCalls(options.sqs);
  const { queueUrl, deadLetterQueueUrl } = options;
  if (queueUrl !== undefined && typeof queueUrl !== 'function' && !nonEmpty(queueUrl)) {
    throw new InvalidArgumentError(
      'queueUrl must be a non-empty string or a function (queue) => url',
    );
  }
  if (deadLetterQueueUrl !== undefined) {
    if (!nonEmpty(deadLetterQueueUrl)) {
      throw new InvalidArgumentError('deadLetterQueueUrl must be a non-empty string');
    }
    if (!calls) {
      throw new InvalidArgumentError('deadLetterQueueUrl needs the sqs client to send messages');
    }
  }
  const dlqFifo = deadLetterQueueUrl?.endsWith('.fifo') ?? false;
  const concurrency = options.concurrency ?? 10;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError(
      `concurrency must be an integer >= 1, got ${String(concurrency)}`,
    );
  }
  const queues = new Map<string, SqsQueueRef>();

  function queueOf(arn: string): SqsQueueRef {
    let queue = queues.get(arn);
    if (!queue) {
      queue = parseQueueArn(arn);
      queues.set(arn, queue);
    }
    return queue;
  }

  function urlOf(queue: SqsQueueRef): string {
    if (typeof queueUrl === 'string') return queueUrl;
    if (typeof queueUrl === 'function') return queueUrl(queue);
    return queueUrlOf(queue);
  }

  /** Runs one record; true when it is done (acked or quarantined to the dead-letter queue). */
  async function processRecord(record: SqsRecordLike, queue: SqsQueueRef): Promise<boolean> {
    let done = false;
    const delivery: Delivery = {
      id: record.messageId,
      body: encoder.encode(record.body),
      headers: headersOf(record),
      source: queue.name,
      // Without an operation of the caller's, keys are scoped by the whole ARN: a queue of the
      // same name in another account or region is another source.
      scope: record.eventSourceARN,
      deliveryCount: positiveInt(record.attributes.ApproximateReceiveCount),
      publishedAt: positiveInt(record.attributes.SentTimestamp),
      async ack() {
        done = true;
      },
      async retryLater(delayMs) {
        done = false;
        if (!calls) return;
        await calls.changeVisibility({
          QueueUrl: urlOf(queue),
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: visibilitySeconds(delayMs),
        });
      },
      async quarantine(history) {
        if (!calls || deadLetterQueueUrl === undefined) {
          done = false; // the queue's redrive policy takes it from here
          return;
        }
        await calls.sendMessage(deadLetterMessage(record, history, deadLetterQueueUrl, dlqFifo));
        done = true;
      },
    };
    await processor.process(delivery, { signal: NEVER_ABORTED, claimSettle: () => true });
    return done;
  }

  return async function reprocessSqsHandler(event: SqsEventLike): Promise<SqsBatchResponse> {
    const records = checkSqsEvent(event);
    // Work units: one message each on a standard queue, one message group each on FIFO. A
    // standard queue may hand over two copies of one message in one batch (same messageId,
    // other receipt handles): they run one after the other, so the second replays the first
    // instead of meeting it in progress and failing the message that succeeded.
    const units: Array<{ queue: SqsQueueRef; records: SqsRecordLike[] }> = [];
    const groups = new Map<string, { queue: SqsQueueRef; records: SqsRecordLike[] }>();
    for (const record of records) {
      const queue = queueOf(record.eventSourceARN);
      const groupKey = queue.fifo
        ? `${queue.arn}\u0000group\u0000${record.attributes.MessageGroupId ?? ''}`
        : `${queue.arn}\u0000message\u0000${record.messageId}`;
      let unit = groups.get(groupKey);
      if (!unit) {
        unit = { queue, records: [] };
        groups.set(groupKey, unit);
        units.push(unit);
      }
      unit.records.push(record);
    }

    const failed = new Set<SqsRecordLike>();
    await forEachLimited(units, concurrency, async (unit) => {
      let blocked = false;
      for (const record of unit.records) {
        if (blocked) {
          failed.add(record);
          continue;
        }
        let done: boolean;
        try {
          done = await processRecord(record, unit.queue);
        } catch {
          // Not an outcome the runtime knows (a classify that threw): this record alone is
          // reported failed and comes back after its visibility timeout. Rejecting the batch
          // would make Lambda run the records that succeeded again.
          done = false;
        }
        if (!done) {
          failed.add(record);
          // The rest of a FIFO group waits behind it; a later copy of a failed message is
          // reported with it rather than run again at once, past its backoff.
          blocked = true;
        }
      }
    });
    // By message id, once each: copies of one message share their id.
    const ids = new Set(records.filter((record) => failed.has(record)).map((r) => r.messageId));
    return { batchItemFailures: [...ids].map((id) => ({ itemIdentifier: id })) };
  };
}

/** A backoff delay as a visibility timeout: whole seconds, rounded up, at most 12 hours. */
export function visibilitySeconds(delayMs: number): number {
  if (!Number.isFinite(delayMs) || delayMs <= 0) return 0;
  return Math.min(MAX_VISIBILITY_SECONDS, Math.ceil(delayMs / 1000));
}

/** The message sent to the dead-letter queue: body and attributes untouched, plus the history. */
function deadLetterMessage(
  record: SqsRecordLike,
  history: QuarantineHistory,
  queueUrl: string,
  fifo: boolean,
): SendMessageInput {
  const attributes: Record<string, SdkMessageAttribute> = {};
  for (const [name, attribute] of Object.entries(record.messageAttributes ?? {})) {
    if (name === HISTORY_ATTRIBUTE) continue; // from an earlier quarantine: replaced below
    if (attribute.binaryValue !== undefined) {
      attributes[name] = {
        DataType: attribute.dataType,
        BinaryValue: Buffer.from(attribute.binaryValue, 'base64'),
      };
    } else if (attribute.stringValue !== undefined) {
      attributes[name] = { DataType: attribute.dataType, StringValue: attribute.stringValue };
    }
  }
  if (Object.keys(attributes).length >= MAX_MESSAGE_ATTRIBUTES) {
    throw new InvalidArgumentError(
      `cannot quarantine message ${record.messageId} with its history: it already has ${MAX_MESSAGE_ATTRIBUTES} message attributes, the SQS maximum`,
    );
  }
  attributes[HISTORY_ATTRIBUTE] = { DataType: 'String', StringValue: JSON.stringify(history) };
  const input: SendMessageInput = {
    QueueUrl: queueUrl,
    MessageBody: record.body,
    MessageAttributes: attributes,
  };
  if (fifo) {
    input.MessageGroupId = record.attributes.MessageGroupId ?? record.messageId;
    input.MessageDeduplicationId = record.messageId;
  }
  return input;
}

/** String and number attributes as headers (binary ones as their base64 text). */
function headersOf(record: SqsRecordLike): Headers {
  const headers: Headers = {};
  for (const [name, attribute] of Object.entries(record.messageAttributes ?? {})) {
    const value = attribute.stringValue ?? attribute.binaryValue;
    if (value !== undefined) headers[name] = value;
  }
  return headers;
}

function positiveInt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function nonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  });
  await Promise.all(lanes);
}
