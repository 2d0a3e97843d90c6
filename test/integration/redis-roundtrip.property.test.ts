/**
 * Whatever text goes in comes back unchanged: keys, fingerprints, step names, results and
 * failures of any Unicode (the scripts hand records back as cjson-encoded text, so every
 * escape matters), through begin, saveStep, complete or fail, the replay and get.
 */
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openRedisStore, type RedisStore } from '../../src/stores/redis/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { dropPrefix } from './fixtures/redis-admin.js';

const text = fc.string({ unit: 'binary', maxLength: 40 });
const bigText = fc.oneof(text, fc.string({ unit: 'binary', minLength: 500, maxLength: 4000 }));

await describeWithService('redis', 'redis store round trip (property)', () => {
  const prefix = `${RUN_ID}:rt:`;
  let store: RedisStore;
  let admin: Redis;
  beforeAll(async () => {
    store = await openRedisStore(SERVICES.redis.url, { prefix });
    admin = new Redis(SERVICES.redis.url);
  });
  afterAll(async () => {
    await dropPrefix(admin, prefix);
    await store.close?.();
    await admin.quit();
  });

  it('returns every string exactly as it was stored', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        text,
        text,
        fc.uniqueArray(fc.tuple(text, bigText), { maxLength: 4, selector: ([name]) => name }),
        bigText,
        fc.boolean(),
        async (keyText, fingerprint, steps, outcome, completes) => {
          const key = `${++n}:${keyText}`;
          const begun = await store.begin(key, fingerprint, 30_000, 60_000);
          if (begun.kind !== 'acquired') throw new Error('a fresh key must be acquired');
          for (const [name, value] of steps) {
            expect(await store.saveStep(key, begun.token, name, value)).toEqual({ kind: 'ok' });
          }
          // A takeover hands the steps back through the same encoding.
          expect(await store.release(key, begun.token)).toEqual({ kind: 'ok' });
          const again = await store.begin(key, fingerprint, 30_000, 60_000);
          expect(again).toMatchObject({ kind: 'acquired', steps: Object.fromEntries(steps) });
          if (again.kind !== 'acquired') return;
          const done = completes
            ? await store.complete(key, again.token, outcome, 60_000)
            : await store.fail(key, again.token, outcome, 60_000);
          expect(done).toEqual({ kind: 'ok' });
          const replay = await store.begin(key, fingerprint, 30_000, 60_000);
          if (replay.kind !== 'existing') throw new Error('a completed key must replay');
          expect(replay.record.key).toBe(key);
          expect(replay.record.fingerprint).toBe(fingerprint);
          expect(replay.record.steps).toEqual(Object.fromEntries(steps));
          expect(completes ? replay.record.result : replay.record.error).toBe(outcome);
          expect(await store.get(key)).toEqual(replay.record);
        },
      ),
      { numRuns: 100 },
    );
  }, 60_000);
});
