import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe } from 'vitest';
import { createMysqlStore } from '../../src/stores/mysql/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { type StoredRow, processCases } from './fixtures/sql-process-cases.js';

/*
 * MariaDB across OS processes: 8 workers racing on 1,000 keys (half of them batching), and a stalled worker fenced
 * off after a second one took its lease over.
 */

const table = `${RUN_ID}_myp`;

await describeWithService('mariadb', 'mysql store across processes', () => {
  let pool: mysql.Pool;

  beforeAll(async () => {
    pool = mysql.createPool({ uri: SERVICES.mariadb.url, connectionLimit: 2 });
    await createMysqlStore(pool, { table }).createSchema();
  });

  afterAll(async () => {
    await pool?.query(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_schema_version\``);
    await pool?.end();
  });

  describe('processes', () => {
    processCases(
      {
        spec: () => ({ kind: 'mysql', url: SERVICES.mariadb.url, table }),
        variants: [{ batch: false }, { batch: false }, { batch: true }, { batch: true }],
        rows: async (prefix) => {
          const [rows] = await pool.query(
            `SELECT CONVERT(\`key\` USING utf8mb4) AS \`key\`, status, attempts, token, result, steps
             FROM \`${table}\` WHERE LEFT(\`key\`, ?) = ? ORDER BY \`key\``,
            [Buffer.byteLength(prefix), prefix],
          );
          return (rows as Array<Record<string, unknown>>).map(
            (r): StoredRow => ({
              key: String(r.key),
              status: String(r.status),
              attempts: Number(r.attempts),
              token: Number(r.token),
              result: r.result === null ? null : String(r.result),
              steps: JSON.parse(String(r.steps)),
            }),
          );
        },
      },
      RUN_ID,
    );
  });
});
