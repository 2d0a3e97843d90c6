import mysql from 'mysql2/promise';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import { idempotent } from '../../src/idempotency/index.js';
import { createMysqlStore, openMysqlStore } from '../../src/stores/mysql/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { TcpProxy, closedPort } from './fixtures/sql-proxy.js';
import { tableLock } from './fixtures/mysql-table-lock.js';

/*
 * MariaDB going away under the store, for real: a connection KILLed while its statement
 * waits, a server that cannot be reached, and a server that disappears and comes back (a TCP
 * proxy in front of the real one). Each time: StoreUnavailableError, the wrapped function
 * does not run, and the same store object works again afterwards.
 */

const table = `${RUN_ID}_myo`;
const url = SERVICES.mariadb.url;

function isUnavailable(error: unknown): boolean {
  return isReprocessError(error, 'STORE_UNAVAILABLE');
}

/** Settles `promise` into its error (or undefined), so a rejection is never left unobserved. */
function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

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
    const store = await openMysqlStore(url, { table, poolSize: 2 });
    let runs = 0;
    const charge = idempotent(
      async (input: { id: string; amount: number }) => {
        runs++;
        return { charged: input.amount };
      },
      { store, key: 'id', scope: 'charge' },
    );
    try {
      let blocker = await lock.block();
      const pending = failure(charge({ id: 'order-1', amount: 5 }));
      await admin.query(`KILL ${await lock.waitingConnection(admin)}`);
      const error = await pending;
      expect(isUnavailable(error), String(error)).toBe(true);
      // It failed because of the kill: MariaDB closes a killed connection (the lock still holds).
      expect((error as { cause?: { code?: string } }).cause?.code).toBe('PROTOCOL_CONNECTION_LOST');
      expect(runs).toBe(0);
      await lock.unblock(blocker);

      // The same store, no restart: the pool dropped the killed connection.
      expect(await charge({ id: 'order-1', amount: 5 })).toEqual({ charged: 5 });
      expect(await charge({ id: 'order-1', amount: 5 })).toEqual({ charged: 5 });
      expect(runs).toBe(1);

      // A fenced write killed mid-statement wrote nothing: the holder can still finish.
      const held = await store.begin('k-write', 'f'.repeat(64), 60_000, 60_000);
      if (held.kind !== 'acquired') throw new Error('expected to acquire');
      blocker = await lock.block();
      const completing = failure(store.complete('k-write', held.token, '"r"', 60_000));
      await admin.query(`KILL ${await lock.waitingConnection(admin)}`);
      expect(isUnavailable(await completing)).toBe(true);
      await lock.unblock(blocker);
      expect((await store.get('k-write'))?.status).toBe('in_progress');
      expect(await store.complete('k-write', held.token, '"r"', 60_000)).toEqual({ kind: 'ok' });
    } finally {
      await store.close?.();
    }
  });

  it('an unreachable server gives StoreUnavailableError and the operation does not run', async () => {
    const port = await closedPort();
    const store = await openMysqlStore(`mysql://root@127.0.0.1:${port}/test`, {
      table,
      connectTimeoutMs: 1000,
    });
    let runs = 0;
    const work = idempotent(
      async () => {
        runs++;
        return 1;
      },
      { store, key: 'id', scope: 'unreachable' },
    );
    try {
      expect(isUnavailable(await failure(work({ id: 'x' })))).toBe(true);
      expect(isUnavailable(await failure(store.get('x')))).toBe(true);
      expect(runs).toBe(0);
    } finally {
      await store.close?.();
    }
  });

  it('a server that goes away and comes back: calls fail closed meanwhile, then the same store works', async () => {
    const proxy = new TcpProxy({ host: '127.0.0.1', port: SERVICES.mariadb.port });
    await proxy.start();
    const store = await openMysqlStore(`mysql://root@127.0.0.1:${proxy.port}/test`, {
      table,
      poolSize: 2,
      connectTimeoutMs: 1000,
    });
    let runs = 0;
    const work = idempotent(
      async (input: { id: string }) => {
        runs++;
        return `done ${input.id}`;
      },
      { store, key: 'id', scope: 'flapping' },
    );
    try {
      expect(await work({ id: 'a' })).toBe('done a');

      await proxy.stop();
      expect(isUnavailable(await failure(work({ id: 'b' })))).toBe(true);
      expect(isUnavailable(await failure(work({ id: 'a' })))).toBe(true);
      expect(runs).toBe(1);

      await proxy.start();
      expect(await work({ id: 'b' })).toBe('done b');
      expect(await work({ id: 'a' })).toBe('done a');
      expect(runs).toBe(2);
    } finally {
      await store.close?.();
      await proxy.stop();
    }
  });
});
