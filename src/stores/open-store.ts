import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Clock } from '../clock.js';
import { redactUrl } from '../redact-url.js';
import { InvalidArgumentError, StoreUnavailableError } from '../errors.js';
import type { IdempotencyStore } from '../idempotency/store.js';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Clock of the stores that read the local clock (memory, SQLite). Server stores use the server's. */
  clock?: Clock;
  /** Directory that relative SQLite paths and the `key-value` default resolve against (default `process.cwd()`). */
  cwd?: string;
  /**
   * Refuse to create a store file, or a table in it, that is not there (SQLite): for tools
   * that inspect a store, where a mistyped path or table must be an error rather than a new,
   * empty database.
   */
  mustExist?: boolean;
}

/** What `openStore` accepts, for error messages and the CLI's usage text. */
export const STORE_URL_FORMS = [
  "'key-value' (the embedded SQLite file .reprocess/idempotency.sqlite)",
  'sqlite:path/to/file.sqlite',
  'sqlite::memory:',
  'memory:',
  'postgres://user@host:5432/db (or postgresql://)',
  'mysql://user@host:3306/db (or mariadb://)',
  'redis://host:6379 (or rediss://)',
  'dynamodb://table?region=…',
] as const;

interface Driver {
  /** Module path relative to this file. */
  module: string;
  /** Export that takes the URL. */
  open: string;
  /** The npm packages the module needs, for the message when they are missing. */
  packages: string;
}

const DRIVERS: Record<string, Driver> = {
  postgres: { module: './postgres/index.js', open: 'openPostgresStore', packages: 'pg' },
  mysql: { module: './mysql/index.js', open: 'openMysqlStore', packages: 'mysql2' },
  redis: { module: './redis/index.js', open: 'openRedisStore', packages: 'ioredis' },
  dynamodb: {
    module: './dynamodb/index.js',
    open: 'openDynamoDbStore',
    packages: '@aws-sdk/client-dynamodb',
  },
  sqlite: { module: './sqlite/index.js', open: 'openSqliteStore', packages: 'better-sqlite3@12' },
};

const SCHEMES: Record<string, keyof typeof DRIVERS> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
  redis: 'redis',
  rediss: 'redis',
  dynamodb: 'dynamodb',
};

/**
 * Opens the store a config value or a CLI `--store` names. Drivers load on demand, so a
 * user of `memory:` or SQLite never needs `pg` or `ioredis` installed.
 *
 * @example
 * const store = await openStore('key-value'); // .reprocess/idempotency.sqlite under cwd
 * const shared = await openStore('postgres://app@db:5432/app?schema=reprocess');
 */
export async function openStore(
  spec: string,
  options: OpenStoreOptions = {},
): Promise<IdempotencyStore> {
  if (typeof spec !== 'string' || spec.trim() === '') {
    throw unknownSpec(spec);
  }
  const text = spec.trim();
  const cwd = options.cwd ?? process.cwd();
  const clock = options.clock === undefined ? {} : { clock: options.clock };

  if (text === 'memory:' || text === 'memory') {
    const { createMemoryStore } = await import('./memory-store.js');
    return createMemoryStore(clock);
  }
  if (text === 'key-value' || text.startsWith('sqlite:')) {
    const sqlite = (await loadDriver(
      'sqlite',
      text,
    )) as unknown as typeof import('./sqlite/index.js');
    const parsed =
      text === 'key-value' ? { path: sqlite.DEFAULT_SQLITE_PATH } : sqlite.parseSqliteUrl(text);
    const path = parsed.path === ':memory:' ? parsed.path : resolve(cwd, parsed.path);
    if (options.mustExist === true && path !== ':memory:' && !existsSync(path)) {
      throw new StoreUnavailableError(`sqlite store: no store file at ${path}`);
    }
    return sqlite.createSqliteStore({
      ...parsed,
      path,
      ...clock,
      // An inspecting tool does not write a new table into a file because of a typo either.
      ...(options.mustExist === true ? { createTable: false } : {}),
    });
  }

  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  const kind = scheme === undefined ? undefined : SCHEMES[scheme];
  if (kind === undefined) throw unknownSpec(spec);
  const driver = DRIVERS[kind] as Driver;
  const loaded = await loadDriver(kind, text);
  const open = loaded[driver.open];
  if (typeof open !== 'function') {
    throw new StoreUnavailableError(
      `store ${redactUrl(text)}: the ${kind} store module does not export ${driver.open}; this build of reprocess is incomplete (reinstall reprocess and ${driver.packages})`,
    );
  }
  const url =
    kind === 'mysql' && scheme === 'mariadb' ? `mysql${text.slice('mariadb'.length)}` : text;
  return (await (open as (url: string) => Promise<IdempotencyStore>)(url)) as IdempotencyStore;
}

async function loadDriver(
  kind: keyof typeof DRIVERS,
  spec: string,
): Promise<Record<string, unknown>> {
  const driver = DRIVERS[kind] as Driver;
  // A non-literal specifier: the driver modules are optional, loaded only when named.
  const specifier: string = driver.module;
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new StoreUnavailableError(
        `store ${redactUrl(spec)} needs the ${kind} driver: install it with \`npm install ${driver.packages}\` (${(error as Error).message})`,
        error,
      );
    }
    throw error;
  }
}

function unknownSpec(spec: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    `unknown store ${JSON.stringify(typeof spec === 'string' ? redactUrl(spec) : spec)}; accepted forms: ${STORE_URL_FORMS.join(', ')}`,
  );
}
