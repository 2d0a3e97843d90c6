import mysql from 'mysql2/promise';
import { afterAll, beforeAll } from 'vitest';
import { createMysqlStore } from '../../src/stores/mysql/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';
import { SQL_CONFORMANCE_OPTIONS } from './fixtures/sql-conformance-options.js';

/*
 * The store conformance suite on the real MariaDB with batching on: concurrent begin,
 * complete and fail calls share statements (small batches, so the race case mixes batches and
 * keys repeated across batches).
 */

await describeWithService('mariadb', 'mysql store, batched', () => {
  let pool: mysql.Pool;
  let otherPool: mysql.Pool;
  let tables = 0;

  beforeAll(async () => {
    pool = mysql.createPool({ uri: SERVICES.mariadb.url, connectionLimit: 6 });
    otherPool = mysql.createPool({ uri: SERVICES.mariadb.url, connectionLimit: 4 });
  });

  afterAll(async () => {
    await pool?.end();
    await otherPool?.end();
  });

  describeStoreConformance(
    'mysql (batched)',
    async () => {
      const options = {
        table: `${RUN_ID}_mycb_${++tables}`,
        batch: { maxBatchSize: 16, maxInFlight: 2 },
      };
      const store = createMysqlStore(pool, options);
      await store.createSchema();
      return {
        store,
        restart: async () => createMysqlStore(pool, options),
        connect: async () => createMysqlStore(otherPool, options),
        cleanup: async () => {
          await store.close?.();
          await pool.query(
            `DROP TABLE IF EXISTS ${store.table}, \`${options.table}_schema_version\``,
          );
        },
      };
    },
    SQL_CONFORMANCE_OPTIONS,
  );
});
