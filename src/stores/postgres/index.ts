export {
  createPostgresStore,
  type BatchOptions,
  type PostgresStore,
  type PostgresStoreOptions,
} from './postgres-store.js';
export { openPostgresStore, type OpenPostgresStoreOptions } from './open-postgres-store.js';
export type { PgQueryable, PgQueryResult } from './pg-queryable.js';
export { SCHEMA_VERSION, type SchemaStatus } from './postgres-schema.js';
