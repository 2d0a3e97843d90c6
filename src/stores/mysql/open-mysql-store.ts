import { redactUrl } from '../../redact-url.js';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';
import { CLIENT_WAIT_MARGIN_MS, poolTimeouts } from '../pool-timeouts.js';
import type { MysqlQueryable } from './mysql-queryable.js';
import { type MysqlStore, type MysqlStoreOptions, createMysqlStore } from './mysql-store.js';

/** Options of {@link openMysqlStore}; they win over the URL's query parameters. */
export interface OpenMysqlStoreOptions extends MysqlStoreOptions {
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Give up connecting after this many ms (default 5000): an unreachable server fails fast. */
  connectTimeoutMs?: number;
  /**
   * Give up on one statement after this many ms (default 15000). The server gives up first:
   * MariaDB cancels the statement (`max_statement_time`); MySQL bounds its lock waits
   * (`innodb_lock_wait_timeout` and `lock_wait_timeout`, in whole seconds, rounded up). The
   * client stops waiting a second later, should the server not answer at all.
   */
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
  const timeouts = poolTimeouts('openMysqlStore', merged);
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
    connectTimeout: timeouts.connectMs,
    enableKeepAlive: true,
    charset: 'utf8mb4_bin',
  });
  const serverMs = limitStatementsOnServer(pool, timeouts.statementMs);
  // MySQL's lock waits are whole seconds, rounded up: the client still waits the margin
  // longer than the server may.
  const timeout = Math.max(timeouts.clientMs, serverMs + CLIENT_WAIT_MARGIN_MS);
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

/** The callback-style connection mysql2 passes to a pool's `connection` listeners. */
interface RawConnection {
  query(sql: string, callback: (error: Error | null) => void): unknown;
  destroy(): void;
}

/**
 * Makes the server give up on a statement of each new connection after `ms`, before anything
 * else runs on it. A client timeout alone only closes the socket: MariaDB and MySQL do not
 * cancel a statement waiting on a row lock when its client goes, so an abandoned begin would
 * still take the key once the lock is freed, for a caller that was told the store failed.
 * MariaDB cancels the whole statement (`max_statement_time`, set in a comment only MariaDB
 * runs); MySQL bounds each lock wait (whole seconds). A connection whose limits could not be
 * set is destroyed, so its first statement fails instead of running without them. Returns
 * the longest the server may take: MySQL's lock waits, rounded up to whole seconds.
 */
function limitStatementsOnServer(
  pool: { on(event: 'connection', listener: never): unknown },
  ms: number,
): number {
  const lockWaitSeconds = Math.ceil(ms / 1000);
  const sql = `SET SESSION innodb_lock_wait_timeout = ${lockWaitSeconds}, lock_wait_timeout = ${lockWaitSeconds} /*M!100101 , max_statement_time = ${ms / 1000} */`;
  const onConnection = (connection: RawConnection) => {
    connection.query(sql, (error) => {
      if (error) connection.destroy();
    });
  };
  pool.on('connection', onConnection as never);
  return Math.max(ms, lockWaitSeconds * 1000);
}

function parseBoolean(name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidArgumentError(`openMysqlStore: ?${name}= must be true or false, got ${value}`);
}
