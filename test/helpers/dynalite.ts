import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

interface DynaliteOptions {
  /** Time a table stays CREATING (ms); 0 makes it ACTIVE at once. */
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
  maxItemSizeKb?: number;
}

// dynalite ships no types; this is the one function it exports.
const dynalite = createRequire(import.meta.url)('dynalite') as (options: DynaliteOptions) => Server;

/** A dynalite server running in this process. */
export interface Dynalite {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  /** A `DynamoDBClient` for the endpoint (local credentials, us-east-1). The caller destroys it. */
  client(): DynamoDBClient;
  /** The `dynamodb://` URL of `table` on this server. */
  url(table: string): string;
  /** Stops the server, dropping open keep-alive connections. */
  close(): Promise<void>;
}

/**
 * Starts dynalite (an in-memory DynamoDB implementation) in this process on 127.0.0.1, on an
 * ephemeral port unless `port` is given (to bring a stopped server back where it was). Tables are ACTIVE as soon as they are created.
 *
 * Known difference from DynamoDB that matters here: a failed conditional write does not return
 * the old item even with `ReturnValuesOnConditionCheckFailure: ALL_OLD`.
 */
export async function startDynalite(
  options: DynaliteOptions & { port?: number } = {},
): Promise<Dynalite> {
  const { port = 0, ...rest } = options;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...rest });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('dynalite did not listen');
  const endpoint = `http://127.0.0.1:${address.port}`;
  return {
    endpoint,
    port: address.port,
    client: () =>
      new DynamoDBClient({
        endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
    url: (table) => `dynamodb://${table}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
