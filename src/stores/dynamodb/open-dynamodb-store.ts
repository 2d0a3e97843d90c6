import { redactUrl } from '../../redact-url.js';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import type { Clock } from '../../clock.js';
import { InvalidArgumentError } from '../../errors.js';
import { checkTableName } from './create-table.js';
import { createDynamoDbStore, type DynamoDbStore } from './dynamodb-store.js';

/** Options of {@link openDynamoDbStore}. */
export interface OpenDynamoDbStoreOptions {
  clock?: Clock;
  /** Bound on one HTTP request (default 5000 ms); a request past it fails with StoreUnavailableError. */
  requestTimeoutMs?: number;
  /** Bound on opening a connection (default 2000 ms). */
  connectionTimeoutMs?: number;
  /** SDK attempts per call, retries of throttling and transient errors included (default 3). */
  maxAttempts?: number;
  /** Create the table (and turn on TTL) if it is missing, before returning (default false). */
  createTable?: boolean;
}

/**
 * Opens a DynamoDB store from a URL, with its own `DynamoDBClient` (destroyed by `close()`):
 *
 * - `dynamodb://idempotency`: table `idempotency`, region and credentials from the environment
 *   (the SDK's default chain);
 * - `dynamodb://idempotency?region=eu-west-1`;
 * - `dynamodb://idempotency?endpoint=http://127.0.0.1:8000&region=us-east-1`: a local endpoint
 *   (dynalite, DynamoDB Local). On a loopback endpoint without credentials in the environment,
 *   fixed local credentials are used, since local servers accept any.
 *
 * `?createTable=1` creates the table if missing (the same as the `createTable` option).
 */
export async function openDynamoDbStore(
  url: string,
  options: OpenDynamoDbStoreOptions = {},
): Promise<DynamoDbStore> {
  const parsed = parseDynamoDbUrl(url);
  const config: DynamoDBClientConfig = {
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: {
      requestTimeout: options.requestTimeoutMs ?? 5000,
      // Without it, the handler only logs a warning when the timeout passes and the request
      // goes on waiting: a stalled endpoint would hold begin (and its caller) for good.
      throwOnRequestTimeout: true,
      connectionTimeout: options.connectionTimeoutMs ?? 2000,
    },
  };
  if (parsed.endpoint !== undefined) config.endpoint = parsed.endpoint;
  const region = parsed.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (region !== undefined) config.region = region;
  else if (parsed.local) config.region = 'us-east-1';
  if (parsed.local && process.env.AWS_ACCESS_KEY_ID === undefined) {
    config.credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  }
  const client = new DynamoDBClient(config);
  const store = createDynamoDbStore(client, {
    table: parsed.table,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  if (options.createTable || parsed.createTable) {
    try {
      await store.createTable();
    } catch (error) {
      client.destroy();
      throw error;
    }
  }
  return {
    ...store,
    async close() {
      client.destroy();
    },
  };
}

/** The parts of a `dynamodb://table?...` URL. */
export interface DynamoDbUrl {
  table: string;
  endpoint?: string;
  region?: string;
  /** The endpoint is on this machine (127.0.0.0/8, ::1 or localhost). */
  local: boolean;
  createTable: boolean;
}

/** Reads a `dynamodb://table?endpoint=…&region=…&createTable=1` URL; bad parts are InvalidArgumentError. */
export function parseDynamoDbUrl(url: string): DynamoDbUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(
      `openDynamoDbStore: not a URL: ${JSON.stringify(redactUrl(url))}`,
    );
  }
  if (parsed.protocol !== 'dynamodb:') {
    throw new InvalidArgumentError(
      `openDynamoDbStore: expected dynamodb://table?endpoint=...&region=..., got ${JSON.stringify(redactUrl(url))}`,
    );
  }
  let table: string;
  try {
    table = decodeURIComponent(parsed.hostname || parsed.pathname.replace(/^\/+/, ''));
  } catch {
    throw new InvalidArgumentError(
      `openDynamoDbStore: the table in ${JSON.stringify(redactUrl(url))} is not valid percent-encoding (write % as %25)`,
    );
  }
  checkTableName(table);
  const known = new Set(['endpoint', 'region', 'createTable']);
  for (const name of parsed.searchParams.keys()) {
    if (!known.has(name)) {
      throw new InvalidArgumentError(
        `openDynamoDbStore: unknown URL parameter ${JSON.stringify(name)} (allowed: endpoint, region, createTable)`,
      );
    }
  }
  const endpoint = parsed.searchParams.get('endpoint') ?? undefined;
  let local = false;
  if (endpoint !== undefined) {
    let host: string;
    try {
      host = new URL(endpoint).hostname;
    } catch {
      throw new InvalidArgumentError(
        `openDynamoDbStore: endpoint must be a URL such as http://127.0.0.1:8000, got ${JSON.stringify(redactUrl(endpoint))}`,
      );
    }
    local = host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
  }
  const region = parsed.searchParams.get('region') ?? undefined;
  const createTable = ['1', 'true'].includes(parsed.searchParams.get('createTable') ?? '');
  return {
    table,
    local,
    createTable,
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(region === undefined ? {} : { region }),
  };
}
