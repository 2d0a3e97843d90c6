import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import {
  createRedisStore,
  fromNodeRedis,
  openRedisStore,
  type RedisStore,
} from '../../src/stores/redis/index.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

const URL = SERVICES.redis.url;
/**
 * Leases and TTLs run on the server's clock, so the suite waits in real time. At the suite's
 * default 300 ms, a busy machine (two cores shared by many test runs) can let a TTL pass
 * between two calls that the suite expects inside it; 1 s leaves room.
 */
const REAL_TIME = { realTimeLeaseMs: 1000, realTimeMarginMs: 300 };

/** Removes every key under `prefix` (the suite's cleanup and ours). */
async function dropPrefix(admin: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length > 0) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

await describeWithService('redis', 'redis store', () => {
  const admin = new Redis(URL, { lazyConnect: true });
  let n = 0;

  beforeAll(async () => {
    await admin.connect();
  });
  afterAll(async () => {
    await dropPrefix(admin, `${RUN_ID}:`);
    await admin.quit();
  });

  describeStoreConformance(
    'redis (ioredis, openRedisStore)',
    async () => {
      const prefix = `${RUN_ID}:c${++n}:`;
      const open = () => openRedisStore(URL, { prefix });
      return {
        store: await open(),
        restart: open,
        connect: open,
        cleanup: () => dropPrefix(admin, prefix),
      };
    },
    REAL_TIME,
  );

  describe('with a node-redis client', () => {
    const client = createClient({ url: URL });
    beforeAll(async () => {
      await client.connect();
    });
    afterAll(async () => {
      await client.close();
    });

    describeStoreConformance(
      'redis (node-redis, fromNodeRedis)',
      async () => {
        const prefix = `${RUN_ID}:nr${++n}:`;
        const store = createRedisStore(fromNodeRedis(client), { prefix });
        return { store, cleanup: () => dropPrefix(admin, prefix) };
      },
      REAL_TIME,
    );
  });

  describe('beyond the suite', () => {
    let store: RedisStore;
    const prefix = `${RUN_ID}:x:`;
    beforeAll(async () => {
      store = await openRedisStore(URL, { prefix });
    });
    afterAll(async () => {
      await store.close?.();
    });

    it('keeps every record of a key in one hash under the prefix, with a hash tag', async () => {
      const { token } = await acquire(store, 'layout', 'fp');
      await store.saveStep('layout', token, 'charge', '"ch"');
      expect(store.recordKey('layout')).toBe(`${prefix}{layout}`);
      const keys = await scanAll(admin, `${prefix}*layout*`);
      expect(keys).toEqual([`${prefix}{layout}`]);
      expect(await admin.type(`${prefix}{layout}`)).toBe('hash');
      expect(await admin.hget(`${prefix}{layout}`, 's:charge')).toBe('"ch"');
    });

    it('expires records natively: eviction at expiresAt + grace, dead from expiresAt on', async () => {
      const graceful = createRedisStore(admin, { prefix: `${prefix}g:`, expiryGraceMs: 5000 });
      const { token } = await acquire(graceful, 'ttl', 'fp');
      await graceful.complete('ttl', token, '"r"', 60_000);
      const record = await graceful.get('ttl');
      const pexpiretime = await admin.call('PEXPIRETIME', graceful.recordKey('ttl'));
      expect(pexpiretime).toBe((record?.expiresAt ?? 0) + 5000);
    });

    it('falls back to EVAL when the server forgot the scripts (NOSCRIPT)', async () => {
      await admin.script('FLUSH');
      const first = await store.begin('noscript', 'fp', 30_000, 60_000);
      expect(first.kind).toBe('acquired');
      await admin.script('FLUSH');
      expect((await store.begin('noscript', 'fp', 30_000, 60_000)).kind).toBe('existing');
    });

    it('reports a key of another type or a damaged hash as RecordCorruptError', async () => {
      await admin.set(store.recordKey('a-string'), 'not a hash');
      await expectCode(store.begin('a-string', 'fp', 1000, 60_000), 'RECORD_CORRUPT');
      await expectCode(store.get('a-string'), 'RECORD_CORRUPT');
      await expectCode(store.complete('a-string', 1, 'r', 1000), 'RECORD_CORRUPT');

      await admin.hset(store.recordKey('bad-token'), { fp: 'fp', st: 'in_progress', tok: 'x' });
      await expectCode(store.begin('bad-token', 'fp', 1000, 60_000), 'RECORD_CORRUPT');
      await admin.hset(store.recordKey('bad-status'), {
        fp: 'fp',
        st: 'weird',
        tok: '1',
        att: '1',
        lu: '0',
        exp: '99999999999999',
        ca: '1',
        ua: '1',
      });
      await expectCode(store.get('bad-status'), 'RECORD_CORRUPT');
    });

    it('rejects bad arguments with InvalidArgumentError naming the problem', async () => {
      await expectCode(store.begin('', 'fp', 1000, 1000), 'INVALID_ARGUMENT', /key/);
      await expectCode(store.begin('k', 'fp', -1, 1000), 'INVALID_ARGUMENT', /leaseMs/);
      await expectCode(store.begin('k', 'fp', 1000, Number.NaN), 'INVALID_ARGUMENT', /ttlMs/);
      await expectCode(store.complete('k', 1.5, 'r', 1000), 'INVALID_ARGUMENT', /token/);
      await expectCode(
        store.saveStep('k', 1, 'n', 42 as unknown as string),
        'INVALID_ARGUMENT',
        /step result/,
      );
      await expectCode(store.list({ cursor: 'nope' }), 'INVALID_ARGUMENT', /cursor/);
      expect(() => createRedisStore(admin, { prefix: 'a{b' })).toThrow(/prefix/);
      await expectCode(openRedisStore('http://x'), 'INVALID_ARGUMENT', /redis:\/\//);
    });

    it('takes the prefix from the URL', async () => {
      const fromUrl = await openRedisStore(`${URL}?prefix=${encodeURIComponent(`${prefix}u:`)}`);
      try {
        expect(fromUrl.prefix).toBe(`${prefix}u:`);
        await acquire(fromUrl, 'url', 'fp');
        expect(await admin.exists(`${prefix}u:{url}`)).toBe(1);
      } finally {
        await fromUrl.close?.();
      }
    });
  });
});

async function acquire(store: RedisStore, key: string, fp: string) {
  const result = await store.begin(key, fp, 30_000, 60_000);
  if (result.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  return result;
}

async function scanAll(admin: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    found.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isReprocessError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  if (message) expect((error as Error).message).toMatch(message);
}
