export {
  createMysqlStore,
  type MysqlBatchOptions,
  type MysqlStore,
  type MysqlStoreOptions,
} from './mysql-store.js';
export { openMysqlStore, type OpenMysqlStoreOptions } from './open-mysql-store.js';
export type { MysqlQueryable, MysqlResultHeader, MysqlValue } from './mysql-queryable.js';
export { MYSQL_SCHEMA_VERSION, type MysqlSchemaStatus } from './mysql-schema.js';
