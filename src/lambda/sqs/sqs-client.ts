import { InvalidArgumentError } from '../../errors.js';

/**
 * What reprocess needs of an SQS client: the AWS SDK v3 `SQSClient` (anything with its
 * `send(command)`). The commands are built with `@aws-sdk/client-sqs`, loaded on first use,
 * so `reprocess/lambda` does not need it when no client is given.
 */
export interface SqsClientLike {
  send(command: never): Promise<unknown>;
}

/** `ChangeMessageVisibility` input. */
export interface ChangeVisibilityInput {
  QueueUrl: string;
  ReceiptHandle: string;
  VisibilityTimeout: number;
}

/** A message attribute as `SendMessage` takes it. */
export interface SdkMessageAttribute {
  DataType: string;
  StringValue?: string;
  BinaryValue?: Uint8Array;
}

/** `SendMessage` input. */
export interface SendMessageInput {
  QueueUrl: string;
  MessageBody: string;
  MessageAttributes?: Record<string, SdkMessageAttribute>;
  MessageGroupId?: string;
  MessageDeduplicationId?: string;
}

/** The two SQS calls the handler makes. */
export interface SqsCalls {
  changeVisibility(input: ChangeVisibilityInput): Promise<void>;
  sendMessage(input: SendMessageInput): Promise<void>;
}

interface SqsModule {
  ChangeMessageVisibilityCommand: new (input: ChangeVisibilityInput) => unknown;
  SendMessageCommand: new (input: SendMessageInput) => unknown;
}

let loading: Promise<SqsModule> | undefined;

function loadSdk(): Promise<SqsModule> {
  loading ??= import('@aws-sdk/client-sqs').then(
    (m) => m as unknown as SqsModule,
    (error: unknown) => {
      loading = undefined;
      throw new InvalidArgumentError(
        `the sqs option needs @aws-sdk/client-sqs installed to build its commands (${String(error)})`,
      );
    },
  );
  return loading;
}

/** Wraps an SDK client into the calls the handler makes. */
export function sqsCalls(client: SqsClientLike): SqsCalls {
  if (typeof client !== 'object' || client === null || typeof client.send !== 'function') {
    throw new InvalidArgumentError(
      'sqs must be an SQSClient from @aws-sdk/client-sqs (with send())',
    );
  }
  const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
  return {
    async changeVisibility(input) {
      const sdk = await loadSdk();
      await send(new sdk.ChangeMessageVisibilityCommand(input));
    },
    async sendMessage(input) {
      const sdk = await loadSdk();
      await send(new sdk.SendMessageCommand(input));
    },
  };
}
