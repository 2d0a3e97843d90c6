import type {
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';

/** The commands the store sends. */
export type DynamoDbStoreCommand =
  | PutItemCommand
  | UpdateItemCommand
  | GetItemCommand
  | DeleteItemCommand
  | ScanCommand
  | CreateTableCommand
  | DescribeTableCommand
  | UpdateTimeToLiveCommand;

/**
 * The part of a `DynamoDBClient` (AWS SDK v3) the store uses: `send`. Any client that sends these
 * commands fits, e.g. one wrapped for tracing. The store never closes it.
 */
export interface DynamoDbClientLike {
  send(command: DynamoDbStoreCommand): Promise<unknown>;
}
