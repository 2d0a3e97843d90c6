import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import {
  type PostgresStoreOptions,
  createPostgresStore,
  openPostgresStore,
} from '../../src/stores/postgres/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { killMidOperation, serverOutageCases } from './fixtures/sql-outage-cases.js';

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
      await killMidOperation({
        open: () =>
          openPostgresStore(`${url}?application_name=${application}`, {
            ...extra,
            schema,
            table,
            poolSize: 2,
          }),
        variant,
        block: blockWrites,
        unblock,
        killWaiting: async () => {
          await admin.query('SELECT pg_terminate_backend($1)', [await waitingBackend(application)]);
        },
        // admin_shutdown reached the waiting statement.
        killedCode: '57P01',
      });
    });
  }

  it('a statement past queryTimeoutMs is cancelled on the server too: no claim is left behind', async () => {
    const store = await openPostgresStore(url, { schema, table, poolSize: 1, queryTimeoutMs: 300 });
    try {
      const blocker = await blockWrites();
      const timedOut = await store.begin('pgo-timeout', 'f'.repeat(64), 60_000, 60_000).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(timedOut).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await unblock(blocker);
      // Abandoned by the client and cancelled by the server: the key is free for the next call.
      const next = await store.begin('pgo-timeout', 'f'.repeat(64), 60_000, 60_000);
      expect(next).toMatchObject({ kind: 'acquired', attempts: 1 });
    } finally {
      await store.close?.();
    }
  });

  serverOutageCases({
    serverPort: SERVICES.postgres.port,
    open: (port, options) =>
      openPostgresStore(`postgres://postgres@127.0.0.1:${port}/test`, {
        ...options,
        schema,
        table,
      }),
  });
});
