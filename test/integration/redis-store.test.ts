import { createClient } from '@redis/client';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import {
  createRedisStore,
  fromNodeRedis,
  openRedisStore,
  type RedisStore,
} from '../../src/stores/redis/index.js';
import { runTsx } from '../helpers/run-tsx.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import {
  REDIS_REAL_TIME,
  describeRedisConformance,
  dropPrefix,
  redisAdmin,
} from './fixtures/redis-admin.js';

const URL = SERVICES.redis.url;

await describeWithService('redis', 'redis store', () => {
  const admin = redisAdmin();
  let n = 0;
  // Batching off: one script call per call (redis-batching.test.ts runs the suite batched).
  describeRedisConformance('redis (ioredis, openRedisStore, unbatched)', admin, 'c', {
    batch: false,
  });

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
      REDIS_REAL_TIME,
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

    it('keeps a record and its steps under the prefix in one Cluster hash slot', async () => {
      const { token } = await acquire(store, 'layout', 'fp');
      await store.saveStep('layout', token, 'charge', '"ch"');
      expect(store.recordKey('layout')).toBe(`${prefix}{layout}`);
      expect((await scanAll(admin, `${prefix}*layout*`)).sort()).toEqual([
        `${prefix}{layout}`,
        `${prefix}{layout}:s`,
      ]);
      expect(await admin.type(`${prefix}{layout}`)).toBe('string');
      expect(await admin.hget(`${prefix}{layout}:s`, 'charge')).toBe('"ch"');
      // Braces in a key cannot move the tag: both keys of any record share a slot, and keys
      // that differ only after a brace do not collapse into one tag.
      for (const key of ['}x', 'a}b', '{}', '{a}', '%7D', 'x{y}z}', '}']) {
        const { token: t } = await acquire(store, key, 'fp');
        await store.saveStep(key, t, 's', '1');
        const recordKey = store.recordKey(key);
        expect(slot(`${recordKey}:s`)).toBe(slot(recordKey));
        expect(await admin.exists(recordKey, `${recordKey}:s`)).toBe(2);
        expect((await store.get(key))?.key).toBe(key);
      }
      expect(tagOf(store.recordKey('a}b'))).not.toBe(tagOf(store.recordKey('a}c')));
    });

    it('never hands a new operation the steps of a record that was removed by hand', async () => {
      const first = await acquire(store, 'orphan-steps', 'fp');
      await store.saveStep('orphan-steps', first.token, 'charge', '"old"');
      // An operator (or an eviction policy) drops the record but not its steps hash.
      await admin.del(store.recordKey('orphan-steps'));
      const next = await acquire(store, 'orphan-steps', 'fp');
      expect(next.steps).toEqual({});
      expect((await store.get('orphan-steps'))?.steps).toEqual({});
      await store.saveStep('orphan-steps', next.token, 'email', '"new"');
      expect((await store.get('orphan-steps'))?.steps).toEqual({ email: '"new"' });
    });

    it('expires records natively: eviction at expiresAt + grace, dead from expiresAt on', async () => {
      const graceful = createRedisStore(admin, { prefix: `${prefix}g:`, expiryGraceMs: 5000 });
      const { token } = await acquire(graceful, 'ttl', 'fp');
      await graceful.complete('ttl', token, '"r"', 60_000);
      const record = await graceful.get('ttl');
      const pexpiretime = await admin.call('PEXPIRETIME', graceful.recordKey('ttl'));
      expect(pexpiretime).toBe((record?.expiresAt ?? 0) + 5000);
    });

    it('reports a key of another type or a damaged record as RecordCorruptError', async () => {
      await admin.hset(store.recordKey('a-hash'), { st: 'completed' });
      await expectCode(store.begin('a-hash', 'fp', 1000, 60_000), 'RECORD_CORRUPT');
      await expectCode(store.get('a-hash'), 'RECORD_CORRUPT');
      await expectCode(store.complete('a-hash', 1, 'r', 1000), 'RECORD_CORRUPT');

      await admin.set(store.recordKey('not-a-record'), 'hello');
      await expectCode(store.begin('not-a-record', 'fp', 1000, 60_000), 'RECORD_CORRUPT');
      await expectCode(store.saveStep('not-a-record', 1, 's', '1'), 'RECORD_CORRUPT');
      await expectCode(store.get('not-a-record'), 'RECORD_CORRUPT');

      await admin.set(store.recordKey('bad-status'), 'weird 1 1 0 99999999999 1 1 0\nfp\n');
      await expectCode(store.get('bad-status'), 'RECORD_CORRUPT', /status/);
      await admin.set(store.recordKey('bad-steps'), 'completed 1 1 0 99999999999 1 1 1\nfp\nr');
      await admin.set(`${store.recordKey('bad-steps')}:s`, 'not a hash');
      await expectCode(store.get('bad-steps'), 'RECORD_CORRUPT');
    });

    it('reads a number past 2^53 in a header as corrupt on the server too, and writes nothing', async () => {
      // An in-progress record whose lease ended, with a token Lua can only hold inexactly: a
      // takeover would have written it back as a negative number.
      const batched = createRedisStore(admin, { prefix: `${prefix}big:`, readFirst: false });
      const alone = createRedisStore(admin, {
        prefix: `${prefix}big:`,
        readFirst: false,
        batch: false,
      });
      const headers = [
        'in_progress 99999999999999999999 1 0 99999999999999 1 1 0\nfp\n',
        'in_progress 7 1 0 99999999999999999999 1 1 0\nfp\n',
        'in_progress 7 1 99999999999999999999 99999999999999 1 1 0\nfp\n',
      ];
      for (const [i, text] of headers.entries()) {
        for (const [name, store] of [
          ['batched', batched],
          ['alone', alone],
        ] as const) {
          const key = `big-${i}-${name}`;
          await admin.set(store.recordKey(key), text);
          const calls = await Promise.all([
            store.begin(key, 'fp', 10_000, 60_000).catch((e: unknown) => e),
            // A second call in the same tick, so that the batched store sends a batch.
            store.begin(`${key}-other`, 'fp', 10_000, 60_000),
          ]);
          expect(isReprocessError(calls[0], 'RECORD_CORRUPT'), `${key}: ${String(calls[0])}`).toBe(
            true,
          );
          await expectCode(store.heartbeat(key, 7, 10_000), 'RECORD_CORRUPT');
          await expectCode(store.release(key, 7, 60_000), 'RECORD_CORRUPT');
          expect(await admin.get(store.recordKey(key))).toBe(text);
        }
      }
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

    it('an open refused for its options leaves nothing open: the process can end', async () => {
      const child = await runTsx(
        ['test/integration/fixtures/redis-bad-open.ts', URL],
        process.cwd(),
        20_000,
      );
      expect(child.stdout.trim().split('\n')).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
      expect(child.code).toBe(0);
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

/** The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key. */
function slot(key: string): number {
  let crc = 0;
  for (const byte of Buffer.from(tagOf(key), 'utf8')) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc % 16384;
}

/** What Redis Cluster hashes: the text between the first `{` and the next `}`, if not empty. */
function tagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
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
