/**
 * The Redis store on a real Redis Cluster: a one-node cluster (`redis-server --cluster-enabled
 * yes` holding all 16 384 slots), started by this file on a free port. It checks:
 * - the conformance suite through an ioredis `Cluster` client (batching is off there);
 * - a plain client talking to a Cluster node with batching on (the default): the first batch
 *   is refused with CROSSSLOT, which runs none of it; the store re-sends each call alone and
 *   batches no more, and every call gets the result it would have had alone.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisLike, createRedisStore } from '../../src/stores/redis/index.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';
import { freePort } from '../helpers/ports.js';
import { RUN_ID } from '../helpers/services.js';
import { REDIS_REAL_TIME } from './fixtures/redis-admin.js';

const REQUIRED = process.env.REQUIRE_SERVICES === '1';
const SERVER = 'redis-server';
const hasServer = spawnSync(SERVER, ['--version']).status === 0;

/** A one-node cluster on a free port; resolves once `cluster_state:ok`. */
async function startCluster(): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'reprocess-redis-cluster-'));
  const child: ChildProcess = spawn(
    SERVER,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(dir, 'nodes.conf'),
      '--dir',
      dir,
      // Without it the node announces no address of its own and Cluster clients cannot reach it.
      '--cluster-announce-ip',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ],
    { stdio: 'ignore' },
  );
  const admin = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 50 });
  admin.on('error', () => {});
  const deadline = Date.now() + 15_000;
  await admin.connect().catch(() => undefined);
  for (;;) {
    try {
      await admin.ping();
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
  while (!String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok')) {
    if (Date.now() > deadline) throw new Error('the one-node cluster did not become ready');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await admin.quit();
  return {
    port,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Records the number of keys of every script call sent (a pass-through, not a mock). */
function counting(client: Redis, numKeys: number[]): RedisLike {
  return {
    evalsha: (sha, n, ...rest) => {
      numKeys.push(n);
      return client.evalsha(sha, n, ...rest);
    },
    eval: (script, n, ...rest) => {
      numKeys.push(n);
      return client.eval(script, n, ...rest);
    },
    scan: (cursor, match, pattern, count, size) => client.scan(cursor, match, pattern, count, size),
  };
}

const title = 'redis store on a Redis Cluster';
if (!hasServer) {
  if (REQUIRED) {
    describe(title, () => {
      it('needs redis-server', () => {
        throw new Error(`${SERVER} is not installed and REQUIRE_SERVICES=1`);
      });
    });
  } else {
    describe.skip(`${title} [skipped: ${SERVER} is not installed]`, () => {});
  }
} else {
  describe(title, () => {
    let cluster: { port: number; stop(): Promise<void> };
    const clients: Redis[] = [];
    beforeAll(async () => {
      cluster = await startCluster();
    }, 30_000);
    afterAll(async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      await cluster?.stop();
    });
    const plain = () => {
      const client = new Redis({ port: cluster.port, host: '127.0.0.1' });
      clients.push(client);
      return client;
    };
    const clusterClient = () => new Cluster([{ host: '127.0.0.1', port: cluster.port }]);

    let n = 0;
    describeStoreConformance(
      'redis (ioredis Cluster)',
      async () => {
        const prefix = `${RUN_ID}:cl${++n}:`;
        const opened: Cluster[] = [];
        const open = async () => {
          const client = clusterClient();
          opened.push(client);
          return createRedisStore(client as unknown as RedisLike, { prefix });
        };
        return {
          store: await open(),
          restart: open,
          connect: open,
          cleanup: async () => {
            await Promise.all(opened.map((c) => c.quit().catch(() => c.disconnect())));
          },
        };
      },
      REDIS_REAL_TIME,
    );

    it('a plain client on a Cluster node: a CROSSSLOT batch is re-sent call by call, then no more batches', async () => {
      const numKeys: number[] = [];
      const store = createRedisStore(counting(plain(), numKeys), { prefix: `${RUN_ID}:x:` });
      const keys = Array.from({ length: 40 }, (_, i) => `order-${i}`);
      // Begins made in one tick: one batch of distinct keys in many slots, refused as a whole.
      const begun = await Promise.all(keys.map((key) => store.begin(key, 'fp', 30_000, 60_000)));
      expect(begun.every((b) => b.kind === 'acquired')).toBe(true);
      // The first call on an idle store goes alone at once; the 39 after it leave as batches
      // of at most 32 (two, both sent before the first is refused). A refused batch ran
      // nothing, so each of its calls is then sent alone, exactly once.
      const batches = numKeys.filter((k) => k > 2);
      expect(batches.length).toBeGreaterThanOrEqual(1);
      expect(batches.length).toBeLessThanOrEqual(2);
      expect(numKeys.slice(0, batches.length + 1)).toEqual([2, ...batches]);
      expect(numKeys.slice(batches.length + 1)).toEqual(keys.slice(1).map(() => 2));
      const tokens = begun.map((b) => (b.kind === 'acquired' ? b.token : -1));
      numKeys.length = 0;
      const completed = await Promise.all(
        keys.map((key, i) => store.complete(key, tokens[i] as number, `result ${i}`, 60_000)),
      );
      expect(completed.every((c) => c.kind === 'ok')).toBe(true);
      // The store no longer tries to batch: every complete went alone.
      expect(numKeys).toHaveLength(keys.length);
      expect(numKeys.every((k) => k === 2)).toBe(true);
      const replays = await Promise.all(keys.map((key) => store.begin(key, 'fp', 30_000, 60_000)));
      replays.forEach((replay, i) => {
        expect(replay.kind).toBe('existing');
        if (replay.kind === 'existing') {
          expect(replay.record.status).toBe('completed');
          expect(replay.record.result).toBe(`result ${i}`);
        }
      });
      // A second begin on a key whose first batch was refused still finds one record per key.
      const again = await store.begin('order-0', 'other fingerprint', 30_000, 60_000);
      expect(again.kind).toBe('existing');
      await store.close?.();
    });
  });
}
