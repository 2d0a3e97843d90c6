import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { openRedisStore, type RedisStore } from '../../src/stores/redis/index.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { kvProcessCases } from './fixtures/kv-process-cases.js';
import { dropPrefix } from './fixtures/redis-admin.js';

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
    await dropPrefix(admin, prefix);
    await store.close?.();
    await admin.quit();
  });

  kvProcessCases({
    url: () => url,
    store: () => store,
    race: { inFlight: 8, timeoutMs: 120_000 },
    raw: async (key) => {
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
});
