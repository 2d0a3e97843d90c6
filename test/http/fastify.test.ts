import Fastify, { type FastifyPluginAsync } from 'fastify';
import { describe, expect, it } from 'vitest';
import { fastifyIdempotencyKey } from '../../src/http/fastify.js';
import { tempSqliteStore } from './support/app.js';
import { nodeRequest } from './support/net.js';
import { describeAdapterScenarios, newKey, post } from './support/scenarios.js';
import { startFastify } from './support/servers.js';

describeAdapterScenarios('Fastify 5', startFastify);

describe('Fastify 5: encapsulation and payloads', () => {
  it('guards the routes of the context it is registered in; serialized objects and streams are stored', async () => {
    const sqlite = tempSqliteStore();
    const server = Fastify();
    let runs = 0;
    const guardedRoutes: FastifyPluginAsync = async (guarded) => {
      await guarded.register(fastifyIdempotencyKey({ store: sqlite.store }));
      guarded.post('/guarded/object', async (request) => {
        runs++;
        return { echoed: request.body, runs };
      });
    };
    await server.register(guardedRoutes);
    server.post('/open', async () => ({ open: true }));
    const url = await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      const key = newKey('object');
      const first = await post(`${url}/guarded/object`, { item: 'cup' }, { key });
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ echoed: { item: 'cup' }, runs: 1 });
      const again = await nodeRequest(`${url}/guarded/object`, {
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ item: 'cup' }),
      });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(JSON.parse(again.body)).toEqual({ echoed: { item: 'cup' }, runs: 1 });
      expect(runs).toBe(1);
      // Not in the guarded context: no key needed.
      expect((await post(`${url}/open`, { item: 'cup' })).status).toBe(200);
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });
});

describe('Fastify 5: replays add no header of their own', () => {
  it('replays a redirect with no body without a content-type the first answer did not have', async () => {
    const sqlite = tempSqliteStore();
    const server = Fastify();
    await server.register(fastifyIdempotencyKey({ store: sqlite.store }));
    server.post('/pay', async (_request, reply) => reply.redirect('/receipts/1', 303));
    const url = await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      const key = newKey('redirect');
      const headers = { 'idempotency-key': key, 'content-type': 'application/json' };
      const first = await nodeRequest(`${url}/pay`, { headers, body: '{}' });
      expect(first.status).toBe(303);
      const again = await nodeRequest(`${url}/pay`, { headers, body: '{}' });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.status).toBe(303);
      expect(again.headers.location).toBe('/receipts/1');
      expect(again.headers['content-type']).toBe(first.headers['content-type']);
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });
});
