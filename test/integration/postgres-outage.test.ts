import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import { idempotent } from '../../src/idempotency/index.js';
import {
  type PostgresStoreOptions,
  createPostgresStore,
  openPostgresStore,
} from '../../src/stores/postgres/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { TcpProxy, closedPort } from './fixtures/sql-proxy.js';

/*
 * PostgreSQL going away under the store, for real: a backend terminated while a statement
 * waits (pg_terminate_backend from a second connection), a server that cannot be reached,
 * and a server that disappears and comes back (a TCP proxy in front of the real one, since
 * the shared server must keep running). Each time: StoreUnavailableError, the wrapped
 * function does not run, and the same store object works again afterwards.
 */

const schema = `${RUN_ID}_pgo`;
const table = 'records';
const url = SERVICES.postgres.url;

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

await describeWithService('postgres', 'postgres store outages', () => {
  let admin: pg.Pool;

  beforeAll(async () => {
    admin = new pg.Pool({ connectionString: url, max: 3 });
    admin.on('error', () => {});
    await createPostgresStore(admin, { schema, table }).createSchema();
  });

  afterAll(async () => {
    await admin?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin?.end();
  });

  /** Polls until the store's backend (by application_name) waits on a lock; its pid. */
  async function waitingBackend(application: string): Promise<number> {
    for (let i = 0; i < 500; i++) {
      const { rows } = await admin.query(
        `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
        [application],
      );
      if (rows[0]) return rows[0].pid as number;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no backend of ${application} ever waited on a lock`);
  }

  const blockers = new Set<pg.Client>();

  /** A second connection holding a lock that makes every write to the table wait. */
  async function blockWrites(): Promise<pg.Client> {
    const blocker = new pg.Client({ connectionString: url });
    blockers.add(blocker);
    await blocker.connect();
    await blocker.query('BEGIN');
    // EXCLUSIVE blocks INSERT/UPDATE but not plain reads: the store is stuck mid-write.
    await blocker.query(`LOCK TABLE "${schema}"."${table}" IN EXCLUSIVE MODE`);
    return blocker;
  }

  /** Ends a blocker (its transaction and lock); every blocker is ended even when a case fails. */
  async function unblock(blocker?: pg.Client): Promise<void> {
    for (const b of blocker ? [blocker] : [...blockers]) {
      blockers.delete(b);
      await b.end();
    }
  }

  afterEach(() => unblock());

  const variants: Array<[string, PostgresStoreOptions]> = [
    ['', {}],
    [' (batched)', { batch: true }],
  ];
  for (const [variant, extra] of variants) {
    it(`a backend terminated mid-operation gives StoreUnavailableError, runs nothing, and the next call works${variant}`, async () => {
      const application = `${RUN_ID}_kill${extra.batch ? 'b' : ''}`;
      const store = await openPostgresStore(`${url}?application_name=${application}`, {
        ...extra,
        schema,
        table,
        poolSize: 2,
      });
      let runs = 0;
      const charge = idempotent(
        async (input: { id: string; amount: number }) => {
          runs++;
          return { charged: input.amount };
        },
        { store, key: 'id', scope: `charge${variant}` },
      );
      try {
        // begin waits on the lock, and its connection is killed under it.
        let blocker = await blockWrites();
        const pending = failure(charge({ id: 'order-1', amount: 5 }));
        await admin.query('SELECT pg_terminate_backend($1)', [await waitingBackend(application)]);
        const error = await pending;
        expect(isUnavailable(error), String(error)).toBe(true);
        // It failed because of the kill: admin_shutdown reached the waiting statement.
        expect((error as { cause?: { code?: string } }).cause?.code).toBe('57P01');
        expect(runs).toBe(0);
        await unblock(blocker);

        // The same store, no restart: the pool replaced the dead connection.
        expect(await charge({ id: 'order-1', amount: 5 })).toEqual({ charged: 5 });
        expect(await charge({ id: 'order-1', amount: 5 })).toEqual({ charged: 5 });
        expect(runs).toBe(1);

        // A fenced write killed mid-statement wrote nothing: the holder can still finish.
        const held = await store.begin(`k-write${variant}`, 'f'.repeat(64), 60_000, 60_000);
        if (held.kind !== 'acquired') throw new Error('expected to acquire');
        blocker = await blockWrites();
        const completing = failure(store.complete(`k-write${variant}`, held.token, '"r"', 60_000));
        await admin.query('SELECT pg_terminate_backend($1)', [await waitingBackend(application)]);
        expect(isUnavailable(await completing)).toBe(true);
        await unblock(blocker);
        expect((await store.get(`k-write${variant}`))?.status).toBe('in_progress');
        expect(await store.complete(`k-write${variant}`, held.token, '"r"', 60_000)).toEqual({
          kind: 'ok',
        });
      } finally {
        await store.close?.();
      }
    });
  }

  it('an unreachable server gives StoreUnavailableError and the operation does not run', async () => {
    const port = await closedPort();
    const store = await openPostgresStore(`postgres://postgres@127.0.0.1:${port}/test`, {
      schema,
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
    const proxy = new TcpProxy({ host: '127.0.0.1', port: SERVICES.postgres.port });
    await proxy.start();
    const store = await openPostgresStore(`postgres://postgres@127.0.0.1:${proxy.port}/test`, {
      schema,
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
