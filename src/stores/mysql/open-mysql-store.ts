import { redactUrl } from '../../redact-url.js';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';
import type { MysqlQueryable } from './mysql-queryable.js';
import { type MysqlStore, type MysqlStoreOptions, createMysqlStore } from './mysql-store.js';

/** Options of {@link openMysqlStore}; they win over the URL's query parameters. */
export interface OpenMysqlStoreOptions extends MysqlStoreOptions {
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Give up connecting after this many ms (default 5000): an unreachable server fails fast. */
  connectTimeoutMs?: number;
  /** Give up waiting for one statement after this many ms (default 15000). */
  queryTimeoutMs?: number;
}

/** Query parameters of the URL that are the store's, not the driver's. */
const STORE_PARAMETERS = ['table', 'batch', 'poolSize'] as const;

/**
 * Opens a MySQL/MariaDB store on its own mysql2 pool, from a URL such as
 * `mysql://user:pass@host:3306/app?table=records&batch=true` (`mariadb://` works too). The database is
 * the URL's path. The store owns the pool: `close()` ends it.
 *
 * The pool fails closed: connecting gives up after `connectTimeoutMs`, a statement after
 * `queryTimeoutMs`, and a connection that dies (server restart, `KILL`) is dropped from the
 * pool, its call fails with StoreUnavailableError, and the next call gets a new connection.
 *
 * @example
 * ```ts
 * const store = await openMysqlStore('mysql://app@db:3306/app');
 * await store.createSchema();
 * ```
 */
export async function openMysqlStore(
  url: string,
  options: OpenMysqlStoreOptions = {},
): Promise<MysqlStore> {
  if (typeof url !== 'string') {
    throw new InvalidArgumentError(`openMysqlStore: url must be a string, got ${typeof url}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(
      `openMysqlStore: ${JSON.stringify(redactUrl(url))} is not a URL`,
    );
  }
  if (parsed.protocol !== 'mysql:' && parsed.protocol !== 'mariadb:') {
    throw new InvalidArgumentError(
      `openMysqlStore: url must start with mysql:// or mariadb://, got ${parsed.protocol}//`,
    );
  }
  const fromUrl: OpenMysqlStoreOptions = {};
  for (const name of STORE_PARAMETERS) {
    const value = parsed.searchParams.get(name);
    parsed.searchParams.delete(name);
    if (value === null) continue;
    if (name === 'table') fromUrl.table = value;
    else if (name === 'batch') fromUrl.batch = parseBoolean(name, value);
    else if (/^\d+$/.test(value)) fromUrl.poolSize = Number(value);
    else {
      throw new InvalidArgumentError(`openMysqlStore: ?${name}= must be an integer, got ${value}`);
    }
  }
  const merged = { ...fromUrl, ...options };
  const poolSize = merged.poolSize ?? 10;
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new InvalidArgumentError(
      `openMysqlStore: poolSize must be an integer >= 1, got ${poolSize}`,
    );
  }
  parsed.protocol = 'mysql:';

  let mysql: typeof import('mysql2/promise');
  try {
    mysql = await import('mysql2/promise');
  } catch (error) {
    throw new StoreUnavailableError(
      'openMysqlStore: the "mysql2" package is not installed (npm install mysql2)',
      error,
    );
  }
  // CommonJS under ESM: the named export when Node detects it, else the default object.
  const createPool =
    mysql.createPool ?? (mysql as unknown as { default: typeof mysql }).default.createPool;
  const pool = createPool({
    uri: parsed.toString(),
    connectionLimit: poolSize,
    connectTimeout: merged.connectTimeoutMs ?? 5000,
    enableKeepAlive: true,
    charset: 'utf8mb4_bin',
  });
  const timeout = merged.queryTimeoutMs ?? 15_000;
  // A timed-out statement destroys its connection (mysql2), so the pool replaces it.
  const db: MysqlQueryable = {
    query: (sql, values) => pool.query({ sql, timeout }, values) as Promise<[unknown, unknown]>,
    execute: (sql, values) => pool.execute({ sql, timeout }, values) as Promise<[unknown, unknown]>,
  };

  const { poolSize: _size, connectTimeoutMs: _c, queryTimeoutMs: _q, ...storeOptions } = merged;
  const store = createMysqlStore(db, storeOptions);
  const closeBatches = store.close?.bind(store);
  return Object.assign(store, {
    async close() {
      // Batches still running finish (or fail) before their pool ends.
      await closeBatches?.();
      await pool.end();
    },
  });
}

function parseBoolean(name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidArgumentError(`openMysqlStore: ?${name}= must be true or false, got ${value}`);
}
