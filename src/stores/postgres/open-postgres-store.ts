import { redactUrl } from '../../redact-url.js';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';
import { poolTimeouts } from '../pool-timeouts.js';
import {
  type PostgresStore,
  type PostgresStoreOptions,
  createPostgresStore,
} from './postgres-store.js';

/** Options of {@link openPostgresStore}; they win over the URL's query parameters. */
export interface OpenPostgresStoreOptions extends PostgresStoreOptions {
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Give up connecting after this many ms (default 5000): an unreachable server fails fast. */
  connectTimeoutMs?: number;
  /**
   * Give up on one statement after this many ms (default 15000). The server gives up first: it
   * cancels the statement (`statement_timeout`). The client stops waiting a second later,
   * should the server not answer at all.
   */
  queryTimeoutMs?: number;
}

/** Query parameters of the URL that are the store's, not the driver's. */
const STORE_PARAMETERS = ['table', 'schema', 'batch', 'poolSize'] as const;

/**
 * Opens a PostgreSQL store on its own `pg.Pool`, from a URL such as
 * `postgres://user:pass@host:5432/db?schema=billing&table=records&batch=true`. The store owns
 * the pool: `close()` ends it. Every other query parameter (`sslmode`, `application_name`, ...)
 * goes to pg as it is.
 *
 * The pool fails closed: connecting gives up after `connectTimeoutMs`, a statement after
 * `queryTimeoutMs`, and a connection that dies (server restart, `pg_terminate_backend`) is
 * dropped, its call fails with StoreUnavailableError, and the next call gets a new connection.
 *
 * @example
 * ```ts
 * const store = await openPostgresStore('postgres://app@db:5432/app?schema=reprocess');
 * await store.createSchema();
 * ```
 */
export async function openPostgresStore(
  url: string,
  options: OpenPostgresStoreOptions = {},
): Promise<PostgresStore> {
  const parsed = parseUrl(url);
  const fromUrl: OpenPostgresStoreOptions = {};
  for (const name of STORE_PARAMETERS) {
    const value = parsed.searchParams.get(name);
    parsed.searchParams.delete(name);
    if (value === null) continue;
    if (name === 'table' || name === 'schema') fromUrl[name] = value;
    else if (name === 'batch') fromUrl.batch = parseBoolean(name, value);
    else fromUrl.poolSize = parseInteger(name, value);
  }
  const merged = { ...fromUrl, ...options };
  const timeouts = poolTimeouts('openPostgresStore', merged);
  const poolSize = merged.poolSize ?? 10;
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new InvalidArgumentError(
      `openPostgresStore: poolSize must be an integer >= 1, got ${poolSize}`,
    );
  }

  let pg: typeof import('pg');
  try {
    pg = await import('pg');
  } catch (error) {
    throw new StoreUnavailableError(
      'openPostgresStore: the "pg" package is not installed (npm install pg)',
      error,
    );
  }
  const Pool = pg.default?.Pool ?? pg.Pool;
  const pool = new Pool({
    connectionString: parsed.toString(),
    max: poolSize,
    connectionTimeoutMillis: timeouts.connectMs,
    // The server gives up on a statement before the client does (see CLIENT_WAIT_MARGIN_MS):
    // otherwise a statement the client abandoned (waiting on a lock) could still run and
    // leave a claim no caller holds, which keeps its key in progress for a whole lease.
    query_timeout: timeouts.clientMs,
    statement_timeout: timeouts.statementMs,
    idleTimeoutMillis: 30_000,
  });
  // A connection that dies while idle is removed by the pool; without a listener the
  // `error` event would end the process.
  pool.on('error', () => {});

  const { poolSize: _size, connectTimeoutMs: _c, queryTimeoutMs: _q, ...storeOptions } = merged;
  const store = createPostgresStore(pool, storeOptions);
  const closeBatches = store.close?.bind(store);
  // One closing for every caller: pg's Pool.end() throws when called a second time.
  let closing: Promise<void> | undefined;
  const closeOnce = async () => {
    await closeBatches?.();
    await pool.end();
  };
  return Object.assign(store, {
    close(): Promise<void> {
      closing ??= closeOnce();
      return closing;
    },
  });
}

function parseUrl(url: unknown): URL {
  if (typeof url !== 'string') {
    throw new InvalidArgumentError(`openPostgresStore: url must be a string, got ${typeof url}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(
      `openPostgresStore: ${JSON.stringify(redactUrl(url))} is not a URL`,
    );
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new InvalidArgumentError(
      `openPostgresStore: url must start with postgres:// or postgresql://, got ${parsed.protocol}//`,
    );
  }
  return parsed;
}

function parseBoolean(name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidArgumentError(
    `openPostgresStore: ?${name}= must be true or false, got ${value}`,
  );
}

function parseInteger(name: string, value: string): number {
  if (!/^\d+$/.test(value)) {
    throw new InvalidArgumentError(`openPostgresStore: ?${name}= must be an integer, got ${value}`);
  }
  return Number(value);
}
