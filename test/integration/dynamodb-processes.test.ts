import { type DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe } from 'vitest';
import { type DynamoDbStore, openDynamoDbStore } from '../../src/stores/dynamodb/index.js';
import { type Dynalite, startDynalite } from '../helpers/dynalite.js';
import { RUN_ID } from '../helpers/services.js';
import { kvProcessCases } from './fixtures/kv-process-cases.js';

// dynalite runs here, in the test's process; the children reach it over HTTP on its port.
describe('dynamodb store across OS processes (dynalite)', () => {
  const table = `${RUN_ID}_procs`;
  let dynalite: Dynalite;
  let client: DynamoDBClient;
  let store: DynamoDbStore;
  let url: string;

  beforeAll(async () => {
    dynalite = await startDynalite();
    client = dynalite.client();
    url = dynalite.url(table);
    store = await openDynamoDbStore(url, { createTable: true });
  });
  afterAll(async () => {
    await store?.close?.();
    client?.destroy();
    await dynalite?.close();
  });

  kvProcessCases({
    url: () => url,
    store: () => store,
    race: { inFlight: 4, timeoutMs: 300_000 },
    raw: async (key) => {
      const { Item: item } = await client.send(
        new GetItemCommand({ TableName: table, Key: { pk: { S: key } }, ConsistentRead: true }),
      );
      if (item === undefined) return undefined;
      const charge = item.steps?.M?.['s:charge']?.S;
      return {
        status: item.status?.S as string,
        token: Number(item.token?.N),
        ...(item.result?.S === undefined ? {} : { result: item.result.S }),
        ...(charge === undefined ? {} : { charge }),
      };
    },
  });
});
