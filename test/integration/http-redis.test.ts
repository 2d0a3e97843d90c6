import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { createRedisStore } from '../../src/stores/redis/index.js';
import { describeAcrossServers } from '../http/support/distributed.js';
import { describeAdapterScenarios } from '../http/support/scenarios.js';
import { startExpressAfterParser, startNode } from '../http/support/servers.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';
import { dropPrefix } from './fixtures/redis-admin.js';

/*
 * The HTTP middleware on the Redis store: the adapter scenarios, and three servers sharing
 * one Redis (each its own connection). Every key lives under this run's prefix and is
 * removed at the end.
 */

const base = `${RUN_ID}:http:`;

await describeWithService('redis', 'http middleware on redis', () => {
  const admin = new Redis(SERVICES.redis.url, { lazyConnect: true });
  let suites = 0;

  beforeAll(() => admin.connect());
  afterAll(async () => {
    await dropPrefix(admin, base);
    await admin.quit();
  });

  const storeOn = (prefix: string) => async () => {
    const client = new Redis(SERVICES.redis.url);
    return {
      store: createRedisStore(client, { prefix }),
      close: async () => void (await client.quit()),
    };
  };
  const scenarioStores = async () => {
    const { store, close } = await storeOn(`${base}s${++suites}:`)();
    return { store, cleanup: close };
  };

  describeAdapterScenarios('node:http + redis', startNode, scenarioStores);
  describeAdapterScenarios('Express + redis', startExpressAfterParser, scenarioStores);
  describeAcrossServers('redis', storeOn(`${base}shared:`));
});
