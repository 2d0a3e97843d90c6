import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { type PostgresStoreOptions, createPostgresStore } from '../../src/stores/postgres/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';

/*
 * The store conformance suite against the real PostgreSQL on 127.0.0.1, once per variant
 * (one statement per call, and batched). Each case gets its own table in a schema of this
 * run; the schema is dropped at the end.
 */

const schema = `${RUN_ID}_pgc`;

await describeWithService('postgres', 'postgres store', () => {
  let pool: pg.Pool;
  let otherPool: pg.Pool;
  let tables = 0;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 6 });
    otherPool = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 4 });
    pool.on('error', () => {});
    otherPool.on('error', () => {});
  });

  afterAll(async () => {
    await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool?.end();
    await otherPool?.end();
  });

  const variants: Array<[string, PostgresStoreOptions]> = [
    ['postgres', {}],
    ['postgres (batched)', { batch: { maxBatchSize: 16, maxInFlight: 2 } }],
  ];
  for (const [name, extra] of variants) {
    describeStoreConformance(name, async () => {
      const options = { ...extra, schema, table: `records_${++tables}` };
      const store = createPostgresStore(pool, options);
      await store.createSchema();
      return {
        store,
        restart: async () => createPostgresStore(pool, options),
        connect: async () => createPostgresStore(otherPool, options),
        cleanup: async () => {
          await pool.query(
            `DROP TABLE IF EXISTS ${store.table}, "${schema}"."${options.table}_schema_version"`,
          );
        },
      };
    });
  }
});
