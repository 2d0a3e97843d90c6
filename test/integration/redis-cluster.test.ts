/**
 * The Redis store on a real Redis Cluster, started by this file on free ports
 * (`redis-server --cluster-enabled yes`): three masters sharing the 16 384 slots, and a
 * one-node cluster holding them all. It checks:
 * - the conformance suite through an ioredis `Cluster` client on the three masters (batching
 *   is off there);
 * - that `list` and `purgeExpired` cover the records of every master;
 * - a plain client talking to a Cluster node with batching on (the default): the first batch
 *   is refused with CROSSSLOT, which runs none of it; the store re-sends each call alone and
 *   batches no more, and every call gets the result it would have had alone;
 * - a store opened from a `redis://…?cluster=true` URL (as the config file and the CLI do):
 *   records on every master, calls failing closed while the cluster cannot be reached.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import { type RedisLike, createRedisStore, openRedisStore } from '../../src/stores/redis/index.js';
import { SCRIPTS } from '../../src/stores/redis/scripts.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';
import { freePort } from '../helpers/ports.js';
import { RUN_ID } from '../helpers/services.js';
import { REDIS_REAL_TIME, clientList } from './fixtures/redis-admin.js';

const REQUIRED = process.env.REQUIRE_SERVICES === '1';
const SERVER = 'redis-server';
const hasServer = spawnSync(SERVER, ['--version']).status === 0;

interface TestCluster {
  /** The client port of each master, in the order of their slot ranges. */
  ports: number[];
  stop(): Promise<void>;
}

async function waitFor(what: string, deadline: number, check: () => Promise<boolean>) {
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen in time`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A cluster of `masters` nodes on free ports, the 16 384 slots split evenly between them;
 * resolves once every node says `cluster_state:ok` and knows the others.
 */
async function startCluster(masters: number): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'reprocess-redis-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const busPorts: number[] = [];
  const admins: Redis[] = [];
  const stop = async () => {
    for (const admin of admins) admin.disconnect();
    await Promise.all(
      children.map((child) => {
        if (child.exitCode !== null || child.signalCode !== null) return undefined;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        return exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      // The bus port is chosen too: by default it is port + 10 000, past 65 535 for a high
      // ephemeral port.
      const busPort = await freePort();
      ports.push(port);
      busPorts.push(busPort);
      children.push(
        spawn(
          SERVER,
          [
            '--port',
            String(port),
            '--cluster-port',
            String(busPort),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--dir',
            dir,
            // Without it a node announces no address and Cluster clients cannot reach it.
            '--cluster-announce-ip',
            '127.0.0.1',
            '--save',
            '',
            '--appendonly',
            'no',
          ],
          { stdio: 'ignore' },
        ),
      );
      const admin = new Redis({
        port,
        host: '127.0.0.1',
        lazyConnect: true,
        retryStrategy: () => 50,
      });
      admin.on('error', () => {});
      admins.push(admin);
    }
    const deadline = Date.now() + 20_000;
    for (const admin of admins) {
      await admin.connect().catch(() => undefined);
      await waitFor('a node answering PING', deadline, async () => (await admin.ping()) === 'PONG');
    }
    const share = Math.ceil(16_384 / masters);
    for (let i = 0; i < masters; i++) {
      const last = Math.min(16_383, (i + 1) * share - 1);
      await (admins[i] as Redis).call('CLUSTER', 'ADDSLOTSRANGE', String(i * share), String(last));
    }
    const first = admins[0] as Redis;
    // MEET names the bus port too: it is not port + 10 000 here.
    for (let i = 1; i < masters; i++) {
      await first.call('CLUSTER', 'MEET', '127.0.0.1', String(ports[i]), String(busPorts[i]));
    }
    for (const admin of admins) {
      await waitFor('cluster_state:ok on every node', deadline, async () => {
        const info = String(await admin.call('CLUSTER', 'INFO'));
        return info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${masters}`);
      });
    }
    for (const admin of admins) admin.disconnect();
    admins.length = 0;
  } catch (error) {
    await stop();
    throw error;
  }
  return { ports, stop };
}

/** How many records under `prefix` each master of `cluster` holds, asked of each node. */
async function recordsPerMaster(cluster: TestCluster, prefix: string): Promise<number[]> {
  return Promise.all(
    cluster.ports.map(async (port) => {
      const node = new Redis({ port, host: '127.0.0.1' });
      try {
        return (await node.keys(`${prefix}{*}`)).length;
      } finally {
        node.disconnect();
      }
    }),
  );
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
    // Three masters for the store through a Cluster client (records spread over the nodes);
    // one node holding every slot for a plain client, which follows no MOVED redirection.
    let three: TestCluster | undefined;
    let one: TestCluster | undefined;
    const clients: Redis[] = [];
    beforeAll(async () => {
      [three, one] = await Promise.all([startCluster(3), startCluster(1)]);
    }, 60_000);
    afterAll(async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      await Promise.all([three?.stop(), one?.stop()]);
    });
    const plain = () => {
      const client = new Redis({
        port: (one as TestCluster).ports[0] as number,
        host: '127.0.0.1',
      });
      clients.push(client);
      return client;
    };
    const clusterClient = () =>
      new Cluster((three as TestCluster).ports.map((port) => ({ host: '127.0.0.1', port })));

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

    it("answers replays with the script, never a GET judged on another node's clock", async () => {
      const prefix = `${RUN_ID}:rf:`;
      const client = clusterClient();
      const sent: string[] = [];
      const watched = new Proxy(client, {
        get(target, name, receiver) {
          const value = Reflect.get(target, name, receiver);
          if (name === 'get' || name === 'time') {
            return (...args: unknown[]) => {
              sent.push(String(name));
              return (value as (...a: unknown[]) => unknown).apply(target, args);
            };
          }
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      try {
        const store = createRedisStore(watched as unknown as RedisLike, { prefix });
        for (let i = 0; i < 20; i++) {
          const begun = await store.begin(`k${i}`, 'fp', 30_000, 60_000);
          if (begun.kind !== 'acquired') throw new Error('expected to acquire');
          await store.complete(`k${i}`, begun.token, '"done"', 60_000);
        }
        // Twenty replays in a row: read-first would have switched to GET after a few.
        for (let i = 0; i < 20; i++) {
          expect((await store.begin(`k${i}`, 'fp', 30_000, 60_000)).kind).toBe('existing');
        }
        expect(sent).toEqual([]);
      } finally {
        await client.quit().catch(() => client.disconnect());
      }
    });

    it('lists and purges the records of every master, paging across nodes', async () => {
      const prefix = `${RUN_ID}:spread:`;
      const client = clusterClient();
      try {
        const store = createRedisStore(client as unknown as RedisLike, { prefix });
        const keys = Array.from({ length: 60 }, (_, i) => `order-${i}`);
        for (const [i, key] of keys.entries()) {
          // Records 0-19: a 200 ms lease and a 300 ms TTL (a record never expires while its
          // lease is live).
          const begun = await (i < 20
            ? store.begin(key, 'fp', 200, 300)
            : store.begin(key, 'fp', 30_000, 3_600_000));
          if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
          if (i >= 40) await store.complete(key, begun.token, `"r-${i}"`, 3_600_000);
        }
        // The records really are spread: each master holds some.
        const perNode = await recordsPerMaster(three as TestCluster, prefix);
        expect(perNode.every((count) => count > 0)).toBe(true);
        expect(perNode.reduce((a, b) => a + b, 0)).toBe(60);

        const seen: string[] = [];
        const cursors: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.list(cursor === undefined ? { limit: 7 } : { limit: 7, cursor });
          seen.push(...page.records.map((record) => record.key));
          cursor = page.cursor;
          if (cursor !== undefined) cursors.push(cursor);
        } while (cursor !== undefined);
        expect(seen.slice().sort()).toEqual(keys.slice().sort());
        // Pages went on from one master to the next.
        expect(cursors.some((c) => /^\d+\./.test(c))).toBe(true);
        expect((await store.list({ status: 'completed' })).records).toHaveLength(20);

        // Records 0-19 are dead after 300 ms and wait in their grace period on all nodes.
        await new Promise((resolve) => setTimeout(resolve, 400));
        expect(await store.purgeExpired({ limit: 5 })).toBe(5);
        expect(await store.purgeExpired()).toBe(15);
        expect((await store.list()).records).toHaveLength(40);
        for (const key of keys.slice(40)) await store.delete(key);
        for (const key of keys.slice(20, 40)) await store.delete(key);
        expect((await store.list()).records).toHaveLength(0);
      } finally {
        await client.quit().catch(() => client.disconnect());
      }
    });

    it('opens a Cluster from a redis:// URL with cluster=true: records on every master, listed from all', async () => {
      const [p0, p1] = (three as TestCluster).ports as [number, number];
      const prefix = `${RUN_ID}:url:`;
      // Two seeds of three: the client learns the third master from the slots.
      const store = await openRedisStore(
        `redis://127.0.0.1:${p0}?cluster=true&node=127.0.0.1:${p1}&prefix=${encodeURIComponent(prefix)}`,
      );
      try {
        const keys = Array.from({ length: 30 }, (_, i) => `order-${i}`);
        // Side by side, as a server would: a Cluster client is never batched.
        const begun = await Promise.all(keys.map((key) => store.begin(key, 'fp', 30_000, 60_000)));
        const done = await Promise.all(
          begun.map((b, i) => {
            if (b.kind !== 'acquired') throw new Error(`expected to acquire ${keys[i]}`);
            return store.complete(keys[i] as string, b.token, `"r-${i}"`, 60_000);
          }),
        );
        expect(done.every((d) => d.kind === 'ok')).toBe(true);
        const replays = await Promise.all(
          keys.map((key) => store.begin(key, 'fp', 30_000, 60_000)),
        );
        expect(replays.map((r) => (r.kind === 'existing' ? r.record.result : r.kind))).toEqual(
          keys.map((_, i) => `"r-${i}"`),
        );
        const perNode = await recordsPerMaster(three as TestCluster, prefix);
        expect(perNode).toHaveLength(3);
        expect(perNode.every((count) => count > 0)).toBe(true);
        expect((await store.list({ limit: 100 })).records.map((r) => r.key).sort()).toEqual(
          keys.slice().sort(),
        );
      } finally {
        await store.close?.();
      }
    });

    it('a cluster=true URL fails closed: an unreachable cluster fails calls at once, a cut connection recovers', async () => {
      const nowhere = await freePort();
      const lost = await openRedisStore(`redis://127.0.0.1:${nowhere}?cluster=true`, {
        connectTimeoutMs: 300,
      });
      try {
        const failed = await lost.begin('k', 'fp', 30_000, 60_000).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(isReprocessError(failed, 'STORE_UNAVAILABLE')).toBe(true);
      } finally {
        await lost.close?.();
      }

      const [p0] = (three as TestCluster).ports as [number];
      const prefix = `${RUN_ID}:cut:`;
      const store = await openRedisStore(
        `redis://127.0.0.1:${p0}?cluster=true&prefix=${encodeURIComponent(prefix)}`,
        { connectionName: `cut-${RUN_ID}` },
      );
      try {
        const first = await store.begin('before', 'fp', 30_000, 60_000);
        expect(first.kind).toBe('acquired');
        // Every connection of the store, on every master, is killed.
        let killed = 0;
        for (const port of (three as TestCluster).ports) {
          const admin = new Redis({ port, host: '127.0.0.1' });
          try {
            for (const client of await clientList(admin)) {
              if (client.name === `cut-${RUN_ID}`) {
                killed += Number(await admin.client('KILL', 'ID', client.id));
              }
            }
          } finally {
            admin.disconnect();
          }
        }
        expect(killed).toBeGreaterThan(0);
        // Each call either works or fails closed, and within a few attempts they work again,
        // on the same store object.
        let outcome: unknown;
        for (let attempt = 0; attempt < 100; attempt++) {
          try {
            outcome = await store.begin('after', 'fp', 30_000, 60_000);
            break;
          } catch (error) {
            expect(isReprocessError(error, 'STORE_UNAVAILABLE')).toBe(true);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
        expect(outcome).toMatchObject({ kind: 'acquired' });
        expect((await store.begin('before', 'fp', 30_000, 60_000)).kind).toBe('existing');
      } finally {
        await store.close?.();
      }
    });

    it('a plain client on a Cluster node: a CROSSSLOT batch is re-sent call by call, then no more batches', async () => {
      const numKeys: number[] = [];
      const client = plain();
      // Scripts cached beforehand, so that no NOSCRIPT retry adds a call to the count.
      for (const script of Object.values(SCRIPTS)) await client.script('LOAD', script);
      const store = createRedisStore(counting(client, numKeys), { prefix: `${RUN_ID}:x:` });
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
