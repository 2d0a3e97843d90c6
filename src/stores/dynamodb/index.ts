export {
  createDynamoDbStore,
  type DynamoDbStore,
  type DynamoDbStoreOptions,
} from './dynamodb-store.js';
export {
  openDynamoDbStore,
  parseDynamoDbUrl,
  type DynamoDbUrl,
  type OpenDynamoDbStoreOptions,
} from './open-dynamodb-store.js';
export { createDynamoDbTable, type CreateTableResult } from './create-table.js';
export type { DynamoDbClientLike, DynamoDbStoreCommand } from './dynamodb-like.js';
