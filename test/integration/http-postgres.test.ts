import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createPostgresStore } from '../../src/stores/postgres/index.js';
import { describeAcrossServers } from '../http/support/distributed.js';
import { describeAdapterScenarios } from '../http/support/scenarios.js';
import { startFastify } from '../http/support/servers.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

/*
 * The HTTP middleware on the PostgreSQL store: the adapter scenarios, and three servers
 * sharing one table (each its own pool). Everything lives in a schema of this run, dropped
 * at the end.
 */

const schema = `${RUN_ID}_http`;

await describeWithService('postgres', 'http middleware on postgres', () => {
  const admin = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 2 });
  admin.on('error', () => undefined);
  let tables = 0;

  beforeAll(async () => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  });
  afterAll(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  const storeOn = (table: string) => async () => {
    const pool = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 8 });
    pool.on('error', () => undefined);
    const store = createPostgresStore(pool, { schema, table });
    await store.createSchema();
    return { store, close: () => pool.end() };
  };

  describeAdapterScenarios('Fastify + postgres', startFastify, async () => {
    const { store, close } = await storeOn(`scenarios_${++tables}`)();
    return { store, cleanup: close };
  });
  describeAcrossServers('postgres', storeOn('shared'));
});
