import mysql from 'mysql2/promise';
import { afterAll, beforeAll, it } from 'vitest';
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

  serverOutageCases({
    serverPort: SERVICES.mariadb.port,
    open: (port, options) =>
      openMysqlStore(`mysql://root@127.0.0.1:${port}/test`, { ...options, table }),
  });
});
