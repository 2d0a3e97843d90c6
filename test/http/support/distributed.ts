import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyStore } from '../../../src/idempotency/store.js';
import { TestApp } from './app.js';
import { LIMITS, fiftyConcurrent, newKey, post } from './scenarios.js';
import { startFastify, startHono, startNode } from './servers.js';

/** Opens one more store object (its own connection) over the same records. */
export type SharedStoreOpener = () => Promise<{ store: IdempotencyStore; close(): Promise<void> }>;

/**
 * Three servers (node:http, Fastify, Hono), each with its own connection to one distributed
 * store, as three instances of a service behind a load balancer: the guarantees must hold
 * across them, where no in-process lock could help.
 */
export function describeAcrossServers(name: string, open: SharedStoreOpener): void {
  describe(`${name}: three servers, one store`, () => {
    const app = new TestApp();
    const urls: string[] = [];
    const stops: (() => Promise<void>)[] = [];

    beforeAll(async () => {
      for (const start of [startNode, startFastify, startHono]) {
        const { store, close } = await open();
        const server = await start(app, { store, ...LIMITS });
        urls.push(`${server.url}/orders`);
        stops.push(async () => {
          await server.close();
          await close();
        });
      }
    });
    afterAll(async () => {
      for (const stop of stops) await stop();
    });

    it('runs 50 concurrent identical requests spread over the servers exactly once', async () => {
      const key = newKey('spread');
      const responses = await fiftyConcurrent(urls, app, key, 'acme');
      expect(app.count('acme', key)).toBe(1);
      const statuses = responses.map((r) => r.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      expect(statuses.filter((s) => s === 409)).toHaveLength(49);
      for (const url of urls) {
        const replay = await post(
          url,
          { item: 'rush', mode: 'gate', gate: key },
          { key, tenant: 'acme' },
        );
        expect(replay.headers.get('idempotent-replayed')).toBe('true');
      }
      expect(app.count('acme', key)).toBe(1);
    });

    it('replays on every server what one server answered, and keeps tenants apart', async () => {
      const key = newKey('shared');
      const [first, second, third] = urls as [string, string, string];
      const a = await post(first, { item: 'book' }, { key, tenant: 'alice' });
      const aText = await a.text();
      const b = await post(second, { item: 'book' }, { key, tenant: 'bob' });
      const bText = await b.text();
      expect(JSON.parse(aText)).toMatchObject({ tenant: 'alice', execution: 1 });
      expect(JSON.parse(bText)).toMatchObject({ tenant: 'bob', execution: 1 });
      for (const url of [third, second, first]) {
        const ra = await post(url, { item: 'book' }, { key, tenant: 'alice' });
        const rb = await post(url, { item: 'book' }, { key, tenant: 'bob' });
        expect(await ra.text()).toBe(aText);
        expect(await rb.text()).toBe(bText);
      }
      const reuse = await post(third, { item: 'lamp' }, { key, tenant: 'alice' });
      expect(reuse.status).toBe(422);
    });
  });
}
