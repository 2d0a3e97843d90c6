import mysql from 'mysql2/promise';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createMysqlStore, openMysqlStore } from '../../src/stores/mysql/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { tableLock } from './fixtures/mysql-table-lock.js';
import { killMidOperation, serverOutageCases } from './fixtures/sql-outage-cases.js';

/*
 * MariaDB going away under the store, for real: a connection KILLed while its statement
 * waits, a server that cannot be reached, and a server that disappears and comes back (a TCP
 * proxy in front of the real one). Each time: StoreUnavailableError, the wrapped function
 * does not run, and the same store object works again afterwards.
 */

const table = `${RUN_ID}_myo`;
const url = SERVICES.mariadb.url;

await describeWithService('mariadb', 'mysql store outages', () => {
  let admin: mysql.Pool;

  beforeAll(async () => {
    admin = mysql.createPool({ uri: url, connectionLimit: 2 });
    await createMysqlStore(admin, { table }).createSchema();
  });

  afterAll(async () => {
    await admin?.query(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_schema_version\``);
    await admin?.end();
  });

  const lock = tableLock(table);

  it('a connection KILLed mid-operation gives StoreUnavailableError, runs nothing, and the next call works', async () => {
    await killMidOperation({
      open: () => openMysqlStore(url, { table, poolSize: 2 }),
      block: lock.block,
      unblock: lock.unblock,
      killWaiting: async () => {
        await admin.query(`KILL ${await lock.waitingConnection(admin)}`);
      },
      // MariaDB closes a killed connection (the lock still holds).
      killedCode: 'PROTOCOL_CONNECTION_LOST',
    });
  });

  it('a statement past queryTimeoutMs is cancelled on the server too: no claim is left behind', async () => {
    const store = await openMysqlStore(url, { table, poolSize: 1, queryTimeoutMs: 500 });
    // Row locks, not a table lock: MariaDB drops a statement waiting on a table lock when its
    // client goes, but one waiting on a row lock runs on once the lock is freed.
    const blocker = await mysql.createConnection({ uri: url });
    try {
      await blocker.query('BEGIN');
      // Next-key locks over the whole key index: every insert into the table waits.
      await blocker.query(`SELECT \`key\` FROM \`${table}\` FOR UPDATE`);
      const timedOut = await store.begin('myo-timeout', 'f'.repeat(64), 60_000, 60_000).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(timedOut).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await blocker.query('ROLLBACK');
      // Cancelled by the server, not only abandoned by the client: the key is free.
      const next = await store.begin('myo-timeout', 'f'.repeat(64), 60_000, 60_000);
      expect(next).toMatchObject({ kind: 'acquired', attempts: 1 });
    } finally {
      await blocker.end();
      await store.close?.();
    }
  });

  serverOutageCases({
    serverPort: SERVICES.mariadb.port,
    open: (port, options) =>
      openMysqlStore(`mysql://root@127.0.0.1:${port}/test`, { ...options, table }),
  });
});
