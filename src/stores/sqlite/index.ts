/**
 * `reprocess/sqlite`: the embedded default idempotency store (better-sqlite3 12, WAL, one file).
 */
export {
  DEFAULT_SQLITE_PATH,
  type SqliteStore,
  type SqliteBatchOptions,
  type SqliteDatabase,
  type SqliteReplayCacheOptions,
  type SqliteStoreOptions,
  createSqliteStore,
} from './sqlite-store.js';
export { openSqliteStore, parseSqliteUrl } from './open-sqlite-store.js';
export { SCHEMA_VERSION } from './schema-version.js';
