/**
 * The Redis store with batching on, against the real server: the conformance suite, and what
 * batching itself must keep (each call decided as if alone, one bad record failing only its
 * own call, one key never twice in a batch). Which calls shared a script call is observed on
 * the wire: the client is wrapped to record every EVALSHA.
 */
import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import type { BeginResult } from '../../src/idempotency/store.js';
import {
  type RedisLike,
  type RedisStore,
  createRedisStore,
  fromNodeRedis,
  openRedisStore,
} from '../../src/stores/redis/index.js';
import { SCRIPTS } from '../../src/stores/redis/scripts.js';
import { createHash } from 'node:crypto';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { describeRedisConformance, redisAdmin } from './fixtures/redis-admin.js';

const URL = SERVICES.redis.url;
const SHA = {
  begin: sha1(SCRIPTS.begin),
  beginMany: sha1(SCRIPTS.beginMany),
  complete: sha1(SCRIPTS.complete),
  completeMany: sha1(SCRIPTS.completeMany),
};

/** One EVALSHA as sent: which script, and how many records (keys / 2). */
interface Call {
  script: string;
  records: number;
}

/** `client` with every EVALSHA recorded in `calls`. */
function recording(client: Redis, calls: Call[]): RedisLike {
  return {
    evalsha(sha, numKeys, ...rest) {
      const script = Object.entries(SHA).find(([, s]) => s === sha)?.[0] ?? sha;
      calls.push({ script, records: numKeys / 2 });
      return client.evalsha(sha, numKeys, ...rest);
    },
    eval: (script, numKeys, ...rest) => client.eval(script, numKeys, ...rest),
    scan: (cursor, match, pattern, count, n) => client.scan(cursor, match, pattern, count, n),
  };
}

await describeWithService('redis', 'redis store, batched', () => {
  const admin = redisAdmin();
  // Small batches, so the race case mixes batches and keys repeated across batches.
  describeRedisConformance('redis (batched)', admin, 'b', {
    batch: { maxBatchSize: 16, maxInFlight: 2 },
  });

  describe('with a node-redis client', () => {
    const client = createClient({ url: URL });
    beforeAll(async () => {
      await client.connect();
    });
    afterAll(async () => {
      await client.close();
    });

    it('batches begin and complete, corrupt records failing alone', async () => {
      const prefix = `${RUN_ID}:nrb:`;
      const store = createRedisStore(fromNodeRedis(client), { prefix, batch: true });
      await admin.set(store.recordKey('bad'), 'hello');
      const begun = await Promise.allSettled(
        ['a', 'bad', 'b'].map((key) => store.begin(key, 'fp', 30_000, 60_000)),
      );
      expect(begun.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expectCode(begun[1], 'RECORD_CORRUPT');
      const tokens = [begun[0], begun[2]].map((s) =>
        tokenOf(s?.status === 'fulfilled' ? s.value : undefined),
      );
      const done = await Promise.all([
        store.complete('a', tokens[0] as number, '"a"', 60_000),
        store.complete('b', tokens[1] as number, '"b"', 60_000),
      ]);
      expect(done).toEqual([{ kind: 'ok' }, { kind: 'ok' }]);
      const replays = await Promise.all(
        ['a', 'b'].map((key) => store.begin(key, 'fp', 30_000, 60_000)),
      );
      expect(replays).toMatchObject([
        { kind: 'existing', record: { result: '"a"' } },
        { kind: 'existing', record: { result: '"b"' } },
      ]);
    });
  });

  describe('batches', () => {
    const client = new Redis(URL, {
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    });
    const calls: Call[] = [];
    let store: RedisStore;
    let plain: RedisStore;
    const prefix = `${RUN_ID}:batches:`;

    beforeAll(() => {
      store = createRedisStore(recording(client, calls), { prefix, batch: true });
      plain = createRedisStore(client, { prefix });
    });
    afterAll(async () => {
      await store.close?.();
      client.disconnect();
    });

    it('decides fresh, replayed, live, ended and reused calls of one batch as if alone', async () => {
      // completed: a replay; live: another holder's lease; ended: a lease that ended, with a
      // step (a takeover); other: another fingerprint on a completed key.
      const done = await acquire(plain, 'm-completed', 'fp');
      await plain.complete('m-completed', done.token, '"r"', 60_000);
      const live = await acquire(plain, 'm-live', 'fp');
      const ended = await acquire(plain, 'm-ended', 'fp');
      await plain.saveStep('m-ended', ended.token, 'charge', '"ch"');
      await plain.release('m-ended', ended.token);
      const other = await acquire(plain, 'm-other', 'fp');
      await plain.complete('m-other', other.token, '"o"', 60_000);

      calls.length = 0;
      // The first call on an idle store goes alone at once; the five after it share a batch.
      const [, fresh, completed, liveNow, endedNow, otherNow] = await Promise.all([
        store.begin('m-opener', 'fp', 30_000, 60_000),
        store.begin('m-fresh', 'fp', 30_000, 60_000),
        store.begin('m-completed', 'fp', 30_000, 60_000),
        store.begin('m-live', 'fp', 30_000, 60_000),
        store.begin('m-ended', 'fp', 30_000, 60_000),
        store.begin('m-other', 'fp2', 30_000, 60_000),
      ]);
      expect(calls).toEqual([
        { script: 'begin', records: 1 },
        { script: 'beginMany', records: 5 },
      ]);

      expect(fresh).toMatchObject({ kind: 'acquired', attempts: 1, takeover: false, steps: {} });
      expect(completed).toMatchObject({
        kind: 'existing',
        record: { status: 'completed', result: '"r"', token: done.token },
      });
      expect(liveNow).toMatchObject({
        kind: 'existing',
        record: { status: 'in_progress', token: live.token },
      });
      expect(endedNow).toMatchObject({
        kind: 'acquired',
        attempts: 2,
        takeover: true,
        steps: { charge: '"ch"' },
      });
      expect(tokenOf(endedNow)).toBeGreaterThan(ended.token);
      expect(otherNow).toMatchObject({
        kind: 'existing',
        record: { status: 'completed', fingerprint: 'fp', result: '"o"' },
      });

      // Completes in one batch: the holder's (ok), a stale token, a finished record, no record.
      calls.length = 0;
      const [, ...outcomes] = await Promise.all([
        store.complete('m-opener', 1, '"o"', 60_000),
        store.complete('m-fresh', tokenOf(fresh), '"f"', 60_000),
        store.complete('m-ended', ended.token, '"stale"', 60_000),
        store.complete('m-completed', done.token, '"again"', 60_000),
        store.complete('m-nothing', 1, '"x"', 60_000),
        store.complete('m-live', live.token, '"l"', 60_000),
      ]);
      expect(calls).toEqual([
        { script: 'complete', records: 1 },
        { script: 'completeMany', records: 5 },
      ]);
      expect(outcomes.map((o) => o.kind)).toEqual([
        'ok',
        'lease_lost',
        'lease_lost',
        'lease_lost',
        'ok',
      ]);
      expect(await plain.get('m-fresh')).toMatchObject({ status: 'completed', result: '"f"' });
      expect(await plain.get('m-ended')).toMatchObject({ status: 'in_progress', attempts: 2 });
      expect(await plain.get('m-completed')).toMatchObject({ result: '"r"' });
      expect(await plain.get('m-nothing')).toBeUndefined();
      expect(await plain.get('m-live')).toMatchObject({ status: 'completed', result: '"l"' });
    });

    it('a corrupt record fails only its own call of the batch', async () => {
      await admin.set(store.recordKey('c-garbage'), 'hello');
      await admin.hset(store.recordKey('c-hash'), { st: 'completed' });
      const done = await acquire(plain, 'c-done', 'fp');
      await plain.complete('c-done', done.token, '"d"', 60_000);

      calls.length = 0;
      const [, ...settled] = await Promise.allSettled([
        store.begin('c-opener', 'fp', 30_000, 60_000),
        store.begin('c-fresh-1', 'fp', 30_000, 60_000),
        store.begin('c-garbage', 'fp', 30_000, 60_000),
        store.begin('c-done', 'fp', 30_000, 60_000),
        store.begin('c-hash', 'fp', 30_000, 60_000),
        store.begin('c-fresh-2', 'fp', 30_000, 60_000),
      ]);
      expect(calls).toEqual([
        { script: 'begin', records: 1 },
        { script: 'beginMany', records: 5 },
      ]);
      expect(settled.map((s) => s.status)).toEqual([
        'fulfilled',
        'rejected',
        'fulfilled',
        'rejected',
        'fulfilled',
      ]);
      expectCode(settled[1], 'RECORD_CORRUPT', /c-garbage|REPROCESS_CORRUPT/);
      expectCode(settled[3], 'RECORD_CORRUPT', /WRONGTYPE/);
      const [first, , replay, , second] = settled.map((s) =>
        s.status === 'fulfilled' ? s.value : undefined,
      );
      expect(first).toMatchObject({ kind: 'acquired', attempts: 1 });
      expect(replay).toMatchObject({ kind: 'existing', record: { result: '"d"' } });
      expect(second).toMatchObject({ kind: 'acquired', attempts: 1 });

      // The same in a batch of completes; the corrupt records are left as they were.
      calls.length = 0;
      const [, ...completes] = await Promise.allSettled([
        store.complete('c-opener', 1, '"o"', 60_000),
        store.complete('c-fresh-1', tokenOf(first), '"1"', 60_000),
        store.complete('c-garbage', 1, '"x"', 60_000),
        store.complete('c-hash', 1, '"x"', 60_000),
        store.complete('c-fresh-2', tokenOf(second), '"2"', 60_000),
      ]);
      expect(calls).toEqual([
        { script: 'complete', records: 1 },
        { script: 'completeMany', records: 4 },
      ]);
      expect(completes.map((s) => s.status)).toEqual([
        'fulfilled',
        'rejected',
        'rejected',
        'fulfilled',
      ]);
      expectCode(completes[1], 'RECORD_CORRUPT');
      expectCode(completes[2], 'RECORD_CORRUPT', /WRONGTYPE/);
      expect(await admin.get(store.recordKey('c-garbage'))).toBe('hello');
      expect(await admin.type(store.recordKey('c-hash'))).toBe('hash');
      expect(await plain.get('c-fresh-1')).toMatchObject({ status: 'completed', result: '"1"' });
      expect(await plain.get('c-fresh-2')).toMatchObject({ status: 'completed', result: '"2"' });
    });

    it('100 concurrent begins on one key: exactly one acquires, none share a batch', async () => {
      calls.length = 0;
      const results = await Promise.all(
        Array.from({ length: 100 }, () => store.begin('one-key', 'fp', 30_000, 60_000)),
      );
      expect(results.filter((r) => r.kind === 'acquired')).toHaveLength(1);
      const winner = results.find((r) => r.kind === 'acquired');
      for (const r of results) {
        if (r.kind === 'existing') expect(r.record.token).toBe(tokenOf(winner as BeginResult));
      }
      expect(calls.every((c) => c.records === 1)).toBe(true);
    });

    it('many keys, begun concurrently from two store objects: each acquired exactly once', async () => {
      const other = createRedisStore(client, {
        prefix,
        batch: { maxBatchSize: 7, maxInFlight: 3 },
      });
      const keys = Array.from({ length: 200 }, (_, i) => `many-${i % 50}`);
      const results = await Promise.all(
        keys.flatMap((key) => [
          store.begin(key, 'fp', 30_000, 60_000),
          other.begin(key, 'fp', 30_000, 60_000),
        ]),
      );
      const acquired = new Map<string, number>();
      results.forEach((r, i) => {
        const key = keys[Math.floor(i / 2)] as string;
        if (r.kind === 'acquired') acquired.set(key, (acquired.get(key) ?? 0) + 1);
      });
      expect([...acquired.values()]).toEqual(Array.from({ length: 50 }, () => 1));
    });

    it('a lone call goes alone, on the single-key script', async () => {
      calls.length = 0;
      const begun = await acquire(store, 'alone', 'fp');
      await store.complete('alone', begun.token, '"a"', 60_000);
      expect(calls).toEqual([
        { script: 'begin', records: 1 },
        { script: 'complete', records: 1 },
      ]);
    });

    it('takes batch from the URL and rejects bad batch options', async () => {
      const fromUrl = await openRedisStore(`${URL}?batch=true&prefix=${prefix}u:`);
      try {
        const results = await Promise.all([
          fromUrl.begin('u1', 'fp', 30_000, 60_000),
          fromUrl.begin('u2', 'fp', 30_000, 60_000),
        ]);
        expect(results.map((r) => r.kind)).toEqual(['acquired', 'acquired']);
      } finally {
        await fromUrl.close?.();
      }
      await expect(openRedisStore(`${URL}?batch=maybe`)).rejects.toThrow(/batch/);
      expect(() => createRedisStore(client, { batch: { maxBatchSize: 0 } })).toThrow(
        /maxBatchSize/,
      );
      expect(() => createRedisStore(client, { batch: 'yes' as unknown as boolean })).toThrow(
        /batch/,
      );
    });
  });
});

async function acquire(store: RedisStore, key: string, fp: string) {
  const result = await store.begin(key, fp, 30_000, 60_000);
  if (result.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  return result;
}

function tokenOf(result: BeginResult | undefined): number {
  if (result?.kind !== 'acquired') throw new Error('expected an acquired result');
  return result.token;
}

function expectCode(
  settled: PromiseSettledResult<unknown> | undefined,
  code: string,
  message?: RegExp,
) {
  const error = settled?.status === 'rejected' ? settled.reason : undefined;
  expect(isReprocessError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  if (message) expect((error as Error).message).toMatch(message);
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}
