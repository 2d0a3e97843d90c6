import pg from 'pg';
import { afterAll, beforeAll, describe } from 'vitest';
import { createPostgresStore } from '../../src/stores/postgres/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { type StoredRow, processCases } from './fixtures/sql-process-cases.js';

/*
 * PostgreSQL across OS processes: 8 workers racing on 1,000 keys (half of them batching),
 * and a stalled worker fenced off after a second one took its lease over.
 */

const schema = `${RUN_ID}_pgp`;
const table = 'records';

await describeWithService('postgres', 'postgres store across processes', () => {
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 2 });
    pool.on('error', () => {});
    await createPostgresStore(pool, { schema, table }).createSchema();
  });

  afterAll(async () => {
    await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool?.end();
  });

  describe('processes', () => {
    processCases(
      {
        spec: () => ({ kind: 'postgres', url: SERVICES.postgres.url, schema, table }),
        variants: [{ batch: false }, { batch: false }, { batch: true }, { batch: true }],
        rows: async (prefix) => {
          const result = await pool.query(
            `SELECT key, status, attempts, token::text AS token, result, steps::text AS steps
             FROM "${schema}"."${table}" WHERE starts_with(key, $1) ORDER BY key`,
            [prefix],
          );
          return result.rows.map(
            (r): StoredRow => ({
              key: r.key,
              status: r.status,
              attempts: r.attempts,
              token: Number(r.token),
              result: r.result,
              steps: JSON.parse(r.steps),
            }),
          );
        },
      },
      RUN_ID,
    );
  });
});
