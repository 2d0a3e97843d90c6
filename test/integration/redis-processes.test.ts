import { Redis } from 'ioredis';
import { afterAll, beforeAll, it } from 'vitest';
import { openRedisStore, type RedisStore } from '../../src/stores/redis/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { leaseExpiryAcrossProcesses, raceAcrossProcesses } from './fixtures/kv-scenarios.js';

await describeWithService('redis', 'redis store across OS processes', () => {
  const prefix = `${RUN_ID}:proc:`;
  const url = `${SERVICES.redis.url}?prefix=${encodeURIComponent(prefix)}`;
  let admin: Redis;
  let store: RedisStore;

  beforeAll(async () => {
    admin = new Redis(SERVICES.redis.url);
    store = await openRedisStore(url);
  });
  afterAll(async () => {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await admin.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    await store.close?.();
    await admin.quit();
  });

  it('8 processes begin the same 1,000 keys: each key is acquired exactly once', async () => {
    await raceAcrossProcesses({
      url,
      store,
      keyPrefix: 'race-',
      processes: 8,
      keys: 1000,
      inFlight: 8,
    });
  }, 120_000);

  it('a process stalled past its lease loses to another, and its late writes change nothing', async () => {
    const key = 'lease-across-processes';
    await leaseExpiryAcrossProcesses({
      url,
      key,
      leaseMs: 2000,
      raw: async () => {
        // Straight from the server: "<status> <token> ...\n<fingerprint>\n<payload>", steps hash.
        const text = await admin.get(store.recordKey(key));
        if (text === null) return undefined;
        const [header = '', , ...payload] = text.split('\n');
        const [status = '', token = ''] = header.split(' ');
        const charge = await admin.hget(`${store.recordKey(key)}:s`, 'charge');
        return {
          status,
          token: Number(token),
          ...(status === 'completed' ? { result: payload.join('\n') } : {}),
          ...(charge === null ? {} : { charge }),
        };
      },
    });
  }, 60_000);
});
