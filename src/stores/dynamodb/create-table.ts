import {
  CreateTableCommand,
  DescribeTableCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { sleep, systemClock } from '../../clock.js';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';
import { toStoreError } from './dynamodb-errors.js';
import type { DynamoDbClientLike } from './dynamodb-like.js';

/** What {@link createDynamoDbTable} did. */
export interface CreateTableResult {
  /** False when the table was already there. */
  created: boolean;
  /**
   * True when native TTL on the `ttl` attribute is on. False where the endpoint does not offer
   * TTL (dynalite): expired records then leave only through `purgeExpired()`.
   */
  ttlEnabled: boolean;
}

/**
 * Creates the table a DynamoDB store uses (partition key `pk` of type S, on-demand billing),
 * waits until it is ACTIVE, and turns on native TTL on the `ttl` attribute. Safe to call when
 * the table exists. For infrastructure as code, declare the same: key `pk` (S), TTL on `ttl`.
 */
export async function createDynamoDbTable(
  client: DynamoDbClientLike,
  table: string,
  options: { timeoutMs?: number } = {},
): Promise<CreateTableResult> {
  checkTableName(table);
  let created = true;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: table,
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
  } catch (error) {
    if ((error as { name?: unknown }).name !== 'ResourceInUseException') {
      throw toStoreError(error, 'createTable', table);
    }
    created = false;
  }
  // Waiting for the table is real waiting on a real server, so it uses the system clock.
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  for (;;) {
    let status: string | undefined;
    try {
      const described = (await client.send(new DescribeTableCommand({ TableName: table }))) as {
        Table?: { TableStatus?: string };
      };
      status = described.Table?.TableStatus;
    } catch (error) {
      throw toStoreError(error, 'createTable', table);
    }
    if (status === 'ACTIVE') break;
    if (Date.now() > deadline) {
      throw new StoreUnavailableError(`dynamodb store: table ${table} is still ${status}`);
    }
    await sleep(systemClock, 250);
  }
  return { created, ttlEnabled: await enableTtl(client, table) };
}

async function enableTtl(client: DynamoDbClientLike, table: string): Promise<boolean> {
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: table,
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      }),
    );
    return true;
  } catch (error) {
    const name = (error as { name?: unknown }).name;
    const message = error instanceof Error ? error.message : '';
    // Already on: DynamoDB says so with a ValidationException.
    if (name === 'ValidationException' && /already enabled/i.test(message)) return true;
    // dynalite and some emulators do not implement UpdateTimeToLive.
    if (name === 'UnknownOperationException' || /unknown ?operation/i.test(message)) return false;
    throw toStoreError(error, 'createTable (enable TTL)', table);
  }
}

/** DynamoDB table names: 3 to 255 of `a-z A-Z 0-9 _ - .`. */
export function checkTableName(table: unknown): asserts table is string {
  if (typeof table !== 'string' || !/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw new InvalidArgumentError(
      `dynamodb store: table must be 3 to 255 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(table)}`,
    );
  }
}
