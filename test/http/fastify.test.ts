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

describe('Fastify 5: replies sent in other ways', () => {
  it('an async handler that calls reply.send() without returning reply: the first client gets the body', async () => {
    const sqlite = tempSqliteStore();
    const server = Fastify({ logger: false });
    await server.register(fastifyIdempotencyKey({ store: sqlite.store }));
    let runs = 0;
    server.post('/object', async (_request, reply) => {
      runs++;
      reply.code(201).send({ id: 42 });
    });
    server.post('/text', async (_request, reply) => {
      runs++;
      reply.code(201).send('created');
    });
    server.post('/bytes', async (_request, reply) => {
      runs++;
      reply.code(201).send(Buffer.from([0, 1, 2, 255]));
    });
    const url = await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      for (const [path, body, length] of [
        ['/object', '{"id":42}', '9'],
        ['/text', 'created', '7'],
        ['/bytes', undefined, '4'],
      ] as const) {
        const headers = {
          'idempotency-key': newKey(path.slice(1)),
          'content-type': 'application/json',
        };
        const first = await nodeRequest(`${url}${path}`, { headers, body: '{}' });
        expect(first.status, path).toBe(201);
        expect(first.headers['content-length'], path).toBe(length);
        if (body !== undefined) expect(first.body, path).toBe(body);
        const again = await nodeRequest(`${url}${path}`, { headers, body: '{}' });
        expect(again.headers['idempotent-replayed'], path).toBe('true');
        expect(again.headers['content-length'], path).toBe(length);
        expect(again.body, path).toBe(first.body);
      }
      expect(runs).toBe(3);
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });

  it('a later onSend hook that fails: the client gets the error Fastify sends, not the stored body', async () => {
    const sqlite = tempSqliteStore();
    const server = Fastify({ logger: false });
    await server.register(fastifyIdempotencyKey({ store: sqlite.store }));
    let fail = true;
    server.addHook('onSend', async (_request, _reply, payload) => {
      if (fail) {
        fail = false;
        throw new Error('later hook failed');
      }
      return payload;
    });
    server.post('/signed', async () => ({ id: 42 }));
    const url = await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      const headers = { 'idempotency-key': newKey('signed'), 'content-type': 'application/json' };
      const first = await nodeRequest(`${url}/signed`, { headers, body: '{}' });
      expect(first.status).toBe(500);
      expect(JSON.parse(first.body)).toMatchObject({ message: 'later hook failed' });
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });

  it('a hijacked reply keeps its key: a repeat gets the not-replayable problem, never a second run', async () => {
    const sqlite = tempSqliteStore();
    const server = Fastify();
    await server.register(fastifyIdempotencyKey({ store: sqlite.store }));
    let charges = 0;
    server.post('/export', async (_request, reply) => {
      charges++;
      reply.hijack();
      reply.raw.writeHead(201, { 'content-type': 'text/plain' });
      reply.raw.end(`charge #${charges}`);
    });
    server.post('/broken', async (_request, reply) => {
      charges++;
      reply.hijack();
      reply.raw.writeHead(503, { 'content-type': 'text/plain' });
      reply.raw.end('down');
    });
    const url = await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      const headers = { 'idempotency-key': newKey('hijack'), 'content-type': 'application/json' };
      const first = await nodeRequest(`${url}/export`, { headers, body: '{}' });
      expect(first.status).toBe(201);
      expect(first.body).toBe('charge #1');
      // onResponse runs after the client has its answer: the record may still be in progress.
      const onceRecorded = async (path: string, h: Record<string, string>) => {
        let answer = await nodeRequest(`${url}${path}`, { headers: h, body: '{}' });
        for (let i = 0; i < 50 && answer.status === 409; i++) {
          await new Promise((resolve) => setTimeout(resolve, 10));
          answer = await nodeRequest(`${url}${path}`, { headers: h, body: '{}' });
        }
        return answer;
      };
      const again = await onceRecorded('/export', headers);
      expect(again.status).toBe(410);
      expect(again.body).toContain('written straight to the connection');
      expect(charges).toBe(1);
      // A hijacked 5xx still frees its key: the retry runs.
      const broken = {
        'idempotency-key': newKey('hijack-5xx'),
        'content-type': 'application/json',
      };
      expect((await nodeRequest(`${url}/broken`, { headers: broken, body: '{}' })).status).toBe(
        503,
      );
      const retried = await onceRecorded('/broken', broken);
      expect(retried.status).toBe(503);
      expect(charges).toBe(3);
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });
});
