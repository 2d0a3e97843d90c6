/**
 * The Redis store's read-first begin, against the real server: while most recent keys had a
 * record, a replay of a finished record is one plain GET; everything else (no record, in
 * progress, steps, expiring within the margin, unreadable) goes to the begin script, which
 * decides on the server's clock. The client is wrapped to record every command the store sends.
 */
import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import {
  READ_FIRST_MARGIN_MS,
  type RedisLike,
  createRedisStore,
  fromNodeRedis,
} from '../../src/stores/redis/index.js';
import { parseRedisUrl } from '../../src/stores/redis/open-redis-store.js';
import { SCRIPTS } from '../../src/stores/redis/scripts.js';
import { createHash } from 'node:crypto';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { codeOf, errorOf } from '../helpers/errors.js';
import { redisAdmin } from './fixtures/redis-admin.js';

const BEGIN = createHash('sha1').update(SCRIPTS.begin).digest('hex');
const LEASE = 30_000;
const DAY = 86_400_000;

/** `client` with every command the store sends recorded by name ('begin' for its script). */
function recording(client: RedisLike, sent: string[]): Required<Omit<RedisLike, 'nodes'>> {
  return {
    evalsha(sha, numKeys, ...rest) {
      sent.push(sha === BEGIN ? 'begin' : 'script');
      return client.evalsha(sha, numKeys, ...rest);
    },
    eval(script, numKeys, ...rest) {
      sent.push('eval');
      return client.eval(script, numKeys, ...rest);
    },
    scan: (cursor, match, pattern, count, n) => client.scan(cursor, match, pattern, count, n),
    get(key) {
      sent.push('get');
      return (client.get as (key: string) => Promise<string | null>).call(client, key);
    },
    time() {
      sent.push('time');
      return (client.time as () => Promise<unknown>).call(client);
    },
  };
}

await describeWithService('redis', 'redis store, read-first begin', () => {
  const admin = redisAdmin();
  const client = new Redis(SERVICES.redis.url, { lazyConnect: true });
  beforeAll(async () => {
    await client.connect();
  });
  afterAll(async () => {
    await client.quit();
  });
  let n = 0;

  /**
   * A store on the recording client, with a sample of the server's clock already taken: its
   * first begin asks for TIME in the background, and a PING on the same connection returns
   * only after that reply was handled.
   */
  async function warmStore(options: { readFirst?: boolean } = {}) {
    const sent: string[] = [];
    const prefix = `${RUN_ID}:rf${++n}:`;
    const store = createRedisStore(recording(client as unknown as RedisLike, sent), {
      prefix,
      ...options,
    });
    await store.begin('warm-up', 'fp', LEASE, DAY);
    await client.ping();
    sent.length = 0;
    return { store, sent, prefix };
  }

  async function finished(store: IdempotencyStore, key: string, ttl = DAY, fail = false) {
    const begun = await store.begin(key, 'fp', LEASE, ttl);
    if (begun.kind !== 'acquired') throw new Error(`${key} was not acquired`);
    const outcome = fail
      ? await store.fail(key, begun.token, `error of ${key}`, ttl)
      : await store.complete(key, begun.token, `result of ${key}`, ttl);
    expect(outcome.kind).toBe('ok');
  }

  it('answers a replay of a completed or failed record with one GET, as the script would', async () => {
    const { store, sent } = await warmStore();
    const strict = createRedisStore(client as unknown as RedisLike, {
      prefix: (store as { prefix: string }).prefix,
      readFirst: false,
    });
    await finished(store, 'paid');
    await finished(store, 'refused', DAY, true);
    sent.length = 0;
    for (const key of ['paid', 'refused', 'paid', 'refused']) {
      const replay = await store.begin(key, 'fp', LEASE, DAY);
      expect(replay).toEqual(await strict.begin(key, 'fp', LEASE, DAY));
      expect(replay.kind).toBe('existing');
    }
    expect(sent).toEqual(['get', 'get', 'get', 'get']);
    // Another fingerprint is the caller's business (key reuse): the record comes back as is.
    const reuse = await store.begin('paid', 'other', LEASE, DAY);
    expect(reuse.kind === 'existing' && reuse.record.fingerprint).toBe('fp');
  });

  it('leaves to the script a record that expires within the margin, then one that has expired', async () => {
    const { store, sent } = await warmStore();
    await finished(store, 'long', READ_FIRST_MARGIN_MS + 3000);
    await finished(store, 'short', READ_FIRST_MARGIN_MS - 200);
    sent.length = 0;
    expect((await store.begin('long', 'fp', LEASE, DAY)).kind).toBe('existing');
    expect(sent).toEqual(['get']);
    sent.length = 0;
    const short = await store.begin('short', 'fp', LEASE, DAY);
    expect(short.kind === 'existing' && short.record.status).toBe('completed');
    expect(sent).toEqual(['get', 'begin']);
    // Once the server sees it expired, a begin starts a new operation, never a replay.
    await new Promise((resolve) => setTimeout(resolve, READ_FIRST_MARGIN_MS - 100));
    const again = await store.begin('short', 'new fingerprint', LEASE, DAY);
    expect(again.kind).toBe('acquired');
  });

  it('leaves to the script a record in progress, one with steps, and no record', async () => {
    const { store, sent } = await warmStore();
    const held = await store.begin('held', 'fp', LEASE, DAY);
    expect(held.kind).toBe('acquired');
    const stepped = await store.begin('stepped', 'fp', LEASE, DAY);
    if (stepped.kind !== 'acquired') throw new Error('not acquired');
    await store.saveStep('stepped', stepped.token, 'charge', 'ch_1');
    await store.complete('stepped', stepped.token, 'done', DAY);
    sent.length = 0;

    const busy = await store.begin('held', 'fp', LEASE, DAY);
    expect(busy.kind === 'existing' && busy.record.status).toBe('in_progress');
    expect(sent).toEqual(['get', 'begin']);
    sent.length = 0;
    const withSteps = await store.begin('stepped', 'fp', LEASE, DAY);
    expect(withSteps.kind === 'existing' && withSteps.record.steps).toEqual({ charge: 'ch_1' });
    expect(sent).toEqual(['get', 'begin']);
    sent.length = 0;
    expect((await store.begin('fresh', 'fp', LEASE, DAY)).kind).toBe('acquired');
    expect(sent).toEqual(['get', 'begin']);
  });

  it('an unreadable record or a key of another type fails as RECORD_CORRUPT, as by the script', async () => {
    const { store, prefix } = await warmStore();
    await admin.set(`${prefix}{garbled}`, 'completed 1 2 3\nnot a header');
    await admin.set(`${prefix}{half}`, 'completed x 1 0 99999999999999 1 1 0\nfp\nresult');
    await admin.hset(`${prefix}{hash}`, 'status', 'completed');
    for (const key of ['garbled', 'half', 'hash']) {
      expect(codeOf(await errorOf(() => store.begin(key, 'fp', LEASE, DAY)))).toBe(
        'RECORD_CORRUPT',
      );
    }
  });

  it('claims first while most keys are new, and reads first again once most are replays', async () => {
    const { store, sent } = await warmStore();
    for (let i = 0; i < 12; i++) await finished(store, `new-${i}`);
    sent.length = 0;
    // Twelve new keys in a row: the order has turned to claim-first.
    await finished(store, 'new-12');
    expect(sent).toEqual(['begin', 'script']);
    sent.length = 0;
    // A replay now costs the script alone; a few more and the order reads first again.
    await store.begin('new-0', 'fp', LEASE, DAY);
    expect(sent).toEqual(['begin']);
    sent.length = 0;
    for (let i = 1; i < 12; i++) await store.begin(`new-${i}`, 'fp', LEASE, DAY);
    expect(sent.slice(0, 2)).toEqual(['begin', 'begin']);
    expect(sent.slice(-1)).toEqual(['get']);
  });

  it('reads TIME in the background, at most once at a time, and not per call', async () => {
    const { store, sent } = await warmStore();
    await finished(store, 'often');
    sent.length = 0;
    for (let i = 0; i < 200; i++) await store.begin('often', 'fp', LEASE, DAY);
    const times = sent.filter((c) => c === 'time').length;
    expect(sent.filter((c) => c === 'get').length).toBeGreaterThan(150);
    expect(times).toBeLessThan(10);
  });

  it('readFirst false, or a client without get and time, sends every begin as the script', async () => {
    const { store: strict, sent } = await warmStore({ readFirst: false });
    await finished(strict, 'k');
    sent.length = 0;
    await strict.begin('k', 'fp', LEASE, DAY);
    expect(sent).toEqual(['begin']);

    const bare: string[] = [];
    const full = recording(client as unknown as RedisLike, bare);
    const minimal: RedisLike = { evalsha: full.evalsha, eval: full.eval, scan: full.scan };
    const plain = createRedisStore(minimal, { prefix: `${RUN_ID}:rfmin:` });
    await finished(plain, 'k');
    bare.length = 0;
    expect((await plain.begin('k', 'fp', LEASE, DAY)).kind).toBe('existing');
    expect(bare).toEqual(['begin']);

    expect(() =>
      createRedisStore(client as unknown as RedisLike, { readFirst: 'yes' as unknown as boolean }),
    ).toThrow(/readFirst must be a boolean/);
    expect(parseRedisUrl('redis://127.0.0.1:6379?readFirst=false&prefix=p:')).toEqual({
      redisUrl: 'redis://127.0.0.1:6379',
      prefix: 'p:',
      readFirst: false,
    });
    expect(() => parseRedisUrl('redis://127.0.0.1?readFirst=maybe')).toThrow(/readFirst/);
  });

  it('works the same through a node-redis client (fromNodeRedis has get and time)', async () => {
    const node = await createClient({ url: SERVICES.redis.url }).connect();
    try {
      const sent: string[] = [];
      const store = createRedisStore(recording(fromNodeRedis(node), sent), {
        prefix: `${RUN_ID}:rfnode:`,
      });
      await finished(store, 'k');
      await node.ping();
      sent.length = 0;
      const replay = await store.begin('k', 'fp', LEASE, DAY);
      expect(replay.kind === 'existing' && replay.record.result).toBe('result of k');
      expect(sent).toEqual(['get']);
    } finally {
      await node.close();
    }
  });
});
