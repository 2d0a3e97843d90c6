import { InvalidArgumentError } from '../../errors.js';

/*
 * SQS events as Lambda delivers them, as structural types (the fields reprocess reads), so
 * that neither `aws-lambda` nor its types are needed.
 */

/** A message attribute as it appears in a Lambda SQS event. */
export interface SqsEventMessageAttribute {
  dataType: string;
  stringValue?: string | undefined;
  /** Base64 in the event. */
  binaryValue?: string | undefined;
}

/** One record of a Lambda SQS event. */
export interface SqsRecordLike {
  messageId: string;
  receiptHandle: string;
  body: string;
  attributes: {
    ApproximateReceiveCount: string;
    SentTimestamp: string;
    MessageGroupId?: string | undefined;
    MessageDeduplicationId?: string | undefined;
    [name: string]: string | undefined;
  };
  messageAttributes?: Record<string, SqsEventMessageAttribute> | undefined;
  eventSource: string;
  eventSourceARN: string;
  awsRegion?: string;
}

/** A Lambda SQS event. */
export interface SqsEventLike {
  Records: SqsRecordLike[];
}

/** The partial batch response (needs `ReportBatchItemFailures` on the event source mapping). */
export interface SqsBatchResponse {
  batchItemFailures: Array<{ itemIdentifier: string }>;
}

/** The queue an ARN names: `arn:<partition>:sqs:<region>:<account>:<name>`. */
export interface SqsQueueRef {
  arn: string;
  partition: string;
  region: string;
  account: string;
  name: string;
  fifo: boolean;
}

/** Parses a queue ARN, or throws {@link InvalidArgumentError}. */
export function parseQueueArn(arn: string): SqsQueueRef {
  const parts = typeof arn === 'string' ? arn.split(':') : [];
  const [prefix, partition, service, region, account, name] = parts;
  if (
    parts.length !== 6 ||
    prefix !== 'arn' ||
    service !== 'sqs' ||
    !partition ||
    !region ||
    !account ||
    !name
  ) {
    throw new InvalidArgumentError(
      `eventSourceARN must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<queue>), got ${JSON.stringify(arn)}`,
    );
  }
  return { arn, partition, region, account, name, fifo: name.endsWith('.fifo') };
}

/** The queue URL of an ARN, on the partition's public endpoint. */
export function queueUrlOf(queue: SqsQueueRef): string {
  const domain = queue.partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
  return `https://sqs.${queue.region}.${domain}/${queue.account}/${queue.name}`;
}

/** Checks the shape of an event, naming the first problem; returns its records. */
export function checkSqsEvent(event: unknown): SqsRecordLike[] {
  if (
    typeof event !== 'object' ||
    event === null ||
    !Array.isArray((event as SqsEventLike).Records)
  ) {
    throw new InvalidArgumentError('an SQS event must be an object with a Records array');
  }
  const records = (event as SqsEventLike).Records;
  records.forEach((record, i) => {
    const where = `Records[${i}]`;
    if (typeof record !== 'object' || record === null) {
      throw new InvalidArgumentError(`${where} must be an object`);
    }
    if (record.eventSource !== 'aws:sqs') {
      throw new InvalidArgumentError(
        `${where}.eventSource must be "aws:sqs", got ${JSON.stringify(record.eventSource)}`,
      );
    }
    for (const field of ['messageId', 'receiptHandle', 'body', 'eventSourceARN'] as const) {
      if (typeof record[field] !== 'string') {
        throw new InvalidArgumentError(`${where}.${field} must be a string`);
      }
    }
    if (typeof record.attributes !== 'object' || record.attributes === null) {
      throw new InvalidArgumentError(`${where}.attributes must be an object`);
    }
  });
  return records;
}
