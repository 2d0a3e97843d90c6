import { Redis } from 'ioredis';
import type pg from 'pg';
import { createPostgresStore } from '../src/stores/postgres/index.js';
import { dropSchema } from './effects-db.js';
import type { StoreKind } from './options.js';
import type { StoreSpec } from './store-access.js';
import { type TcpRelay, startTcpRelay } from './tcp-relay.js';

/**
 * The idempotency store of a run, on the runner's side: the relay every store connection
 * of the run goes through, and the run's own direct admin access to kill those connections
 * on the server and to clean up.
 */
export interface StoreInfra {
  readonly kind: StoreKind;
  readonly relay: TcpRelay;
  /** How process `name` (a worker, the HTTP server) reaches the store. */
  spec(name: string): StoreSpec;
  /**
   * Has the server drop every connection of the run's store clients: `CLIENT KILL` (Redis)
   * or `pg_terminate_backend` (PostgreSQL), found by connection name. Returns how many.
   */
  killConnections(): Promise<number>;
  close(options: { keep: boolean }): Promise<void>;
}

/** Sets up the store of run `runId`: its relay, and for PostgreSQL its schema and table. */
export async function createStoreInfra(
  kind: StoreKind,
  urls: { redis: string; postgres: string },
  runId: string,
  admin: pg.Pool,
): Promise<StoreInfra> {
  const namePrefix = `chaos-${runId}-store-`;
  if (kind === 'redis') {
    const url = new URL(urls.redis);
    const redis = new Redis(urls.redis, { maxRetriesPerRequest: 1, lazyConnect: false });
    redis.on('error', () => {});
    const relay = await startTcpRelay(Number(url.port || 6379));
    const prefix = `chaos:${runId}:`;
    const relayed = new URL(urls.redis);
    relayed.hostname = '127.0.0.1';
    relayed.port = String(relay.port);
    return {
      kind,
      relay,
      spec: (name) => ({
        kind: 'redis',
        url: relayed.toString(),
        prefix,
        connectionName: `${namePrefix}${name}`,
      }),
      async killConnections() {
        const list = (await redis.client('LIST')) as string;
        const ids = list
          .split('\n')
          .map((line) => Object.fromEntries(line.split(' ').map((kv) => kv.split('=', 2))))
          .filter((c: Record<string, string>) => c.name?.startsWith(namePrefix) && c.id)
          .map((c: Record<string, string>) => c.id as string);
        let killed = 0;
        for (const id of ids) killed += Number(await redis.client('KILL', 'ID', id));
        return killed;
      },
      async close({ keep }) {
        try {
          if (!keep) {
            let cursor = '0';
            do {
              const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
              if (keys.length > 0) await redis.unlink(...keys);
              cursor = next;
            } while (cursor !== '0');
          }
        } finally {
          redis.disconnect();
          await relay.close();
        }
      },
    };
  }

  const url = new URL(urls.postgres);
  const schema = `chaos_${runId}_store`;
  const table = 'records';
  await createPostgresStore(admin, { schema, table }).createSchema();
  const relay = await startTcpRelay(Number(url.port || 5432));
  const relayed = new URL(urls.postgres);
  relayed.hostname = '127.0.0.1';
  relayed.port = String(relay.port);
  return {
    kind,
    relay,
    spec: (name) => ({
      kind: 'postgres',
      url: relayed.toString(),
      schema,
      table,
      connectionName: `${namePrefix}${name}`,
    }),
    async killConnections() {
      const result = await admin.query(
        `SELECT count(*)::int AS n FROM (
           SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
           WHERE application_name LIKE $1 AND pid <> pg_backend_pid()
         ) AS t WHERE ok`,
        [`${namePrefix}%`],
      );
      return Number((result.rows[0] as { n: number }).n);
    },
    async close({ keep }) {
      try {
        if (!keep) await dropSchema(admin, schema);
      } finally {
        await relay.close();
      }
    },
  };
}
