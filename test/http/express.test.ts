import { createServer } from 'node:http';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { expressIdempotencyKey } from '../../src/http/express.js';
import { tempSqliteStore } from './support/app.js';
import { close, listen, nodeRequest } from './support/net.js';
import { describeAdapterScenarios, newKey, post } from './support/scenarios.js';
import { startExpressAfterParser, startExpressBeforeParser } from './support/servers.js';

describeAdapterScenarios('Express 5 (after express.json)', startExpressAfterParser);
describeAdapterScenarios('Express 5 (before express.json)', startExpressBeforeParser);

describe('Express 5: mounting', () => {
  it('guards only the routes it is mounted on, and leaves the raw body to a later parser', async () => {
    const sqlite = tempSqliteStore();
    const server = express();
    let runs = 0;
    server.post(
      '/guarded',
      expressIdempotencyKey({ store: sqlite.store }),
      express.text({ type: '*/*' }),
      (req, res) => {
        runs++;
        res.status(201).send(`got ${String(req.body).length} bytes`);
      },
    );
    server.post('/open', express.text({ type: '*/*' }), (_req, res) => {
      res.send('open');
    });
    const http = createServer(server);
    const url = await listen(http);
    try {
      const key = newKey('mounted');
      const body = 'y'.repeat(3000);
      const first = await nodeRequest(`${url}/guarded`, {
        headers: { 'idempotency-key': key, 'content-type': 'text/plain' },
        body,
        chunked: true,
      });
      expect(first).toMatchObject({ status: 201, body: 'got 3000 bytes' });
      const again = await post(`${url}/guarded`, body, {
        key,
        headers: { 'content-type': 'text/plain' },
      });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.text()).toBe('got 3000 bytes');
      expect(runs).toBe(1);
      expect(
        (await post(`${url}/open`, 'z', { headers: { 'content-type': 'text/plain' } })).status,
      ).toBe(200);
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});

describe('Express 5: the route is the path Express routed', () => {
  it('a dot segment in the path is not resolved into another endpoint: the same key there runs, not replays', async () => {
    const sqlite = tempSqliteStore();
    const server = express();
    server.use(expressIdempotencyKey({ store: sqlite.store, scope: () => 'tenant-1' }));
    const ran: string[] = [];
    server.post('/orders/:id/cancel', (req, res) => {
      ran.push(`cancel order ${req.params.id}`);
      res.status(200).send(`cancelled order ${req.params.id}`);
    });
    server.post('/cancel', (_req, res) => {
      ran.push('cancel everything');
      res.status(200).send('cancelled everything');
    });
    const http = createServer(server);
    const url = await listen(http);
    try {
      const key = newKey('dot-segments');
      const headers = { 'idempotency-key': key, 'content-type': 'text/plain' };
      const absolute = `${url}/orders/%2e%2e/cancel`;
      for (const path of [
        '/orders/%2e%2e/cancel',
        '/orders/../cancel',
        '/orders/%2E./cancel',
        // The absolute form (as sent to a proxy): Express routes on its path as it is too,
        // the first spelling's route, so it replays that one.
        absolute,
      ]) {
        const order = await nodeRequest(url, { path, headers, body: 'x' });
        expect(order.body).toBe('cancelled order ..');
      }
      const everything = await nodeRequest(url, { path: '/cancel', headers, body: 'x' });
      expect(everything).toMatchObject({ status: 200, body: 'cancelled everything' });
      expect(everything.headers['idempotent-replayed']).toBeUndefined();
      // Each spelling of the path is its own route; only a repeat of one spelling replays.
      expect(ran).toEqual([
        'cancel order ..',
        'cancel order ..',
        'cancel order ..',
        'cancel everything',
      ]);
      const repeat = await nodeRequest(url, { path: '/orders/%2e%2e/cancel', headers, body: 'x' });
      expect(repeat.headers['idempotent-replayed']).toBe('true');
      expect(ran).toHaveLength(4);
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});

describe('Express 5: after express.json()', () => {
  it('fingerprints the parsed body as canonical JSON: reordered keys match, other data does not', async () => {
    const sqlite = tempSqliteStore();
    const server = express();
    let runs = 0;
    server.use(express.json());
    server.post('/orders', expressIdempotencyKey({ store: sqlite.store }), (req, res) => {
      runs++;
      res.status(201).json({ run: runs, body: req.body });
    });
    const http = createServer(server);
    const url = await listen(http);
    try {
      const key = newKey('canonical');
      const json = { key, headers: { 'content-type': 'application/json' } };
      expect((await post(`${url}/orders`, '{"a":1,"b":{"c":2,"d":3}}', json)).status).toBe(201);
      const reordered = await post(`${url}/orders`, '{"b":{"d":3,"c":2},"a":1}', json);
      expect(reordered.status).toBe(201);
      expect(reordered.headers.get('idempotent-replayed')).toBe('true');
      const changed = await post(`${url}/orders`, '{"a":1,"b":{"c":2,"d":4}}', json);
      expect(changed.status).toBe(422);
      expect(runs).toBe(1);
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});

describe('Express 5: a parsed body nested too deep to fingerprint', () => {
  it('is answered 400 as a problem, and the handler never runs', async () => {
    const sqlite = tempSqliteStore();
    const server = express();
    let runs = 0;
    server.use(express.json());
    server.post('/orders', expressIdempotencyKey({ store: sqlite.store }), (_req, res) => {
      runs++;
      res.status(201).end();
    });
    const http = createServer(server);
    const url = await listen(http);
    try {
      const json = { key: newKey('deep'), headers: { 'content-type': 'application/json' } };
      const deep = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
      const refused = await post(`${url}/orders`, deep(1500), json);
      expect(refused.status).toBe(400);
      expect(refused.headers.get('content-type')).toBe('application/problem+json');
      expect(await refused.json()).toMatchObject({ code: 'REQUEST_NESTED_TOO_DEEP' });
      expect(runs).toBe(0);
      expect((await post(`${url}/orders`, deep(500), json)).status).toBe(201);
      expect(runs).toBe(1);
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});

describe('Express 5: middleware that patched the response before', () => {
  it('keeps their patches: what the client gets still goes through them', async () => {
    const sqlite = tempSqliteStore();
    const server = express();
    let patchedEnds = 0;
    // What compression-like middleware does: wrap res.end on the instance.
    server.use((_req, res, next) => {
      const end = res.end.bind(res) as (...args: unknown[]) => unknown;
      res.end = ((...args: unknown[]) => {
        patchedEnds++;
        res.setHeader('x-patched', 'yes');
        return end(...args);
      }) as typeof res.end;
      next();
    });
    server.use(express.json());
    server.use(expressIdempotencyKey({ store: sqlite.store }));
    server.post('/orders', (req, res) => {
      res.status(201).json({ got: req.body });
    });
    const http = createServer(server);
    const url = await listen(http);
    try {
      const key = newKey('patched');
      const first = await post(`${url}/orders`, { item: 'pen' }, { key });
      expect(first.status).toBe(201);
      expect(first.headers.get('x-patched')).toBe('yes');
      const again = await post(`${url}/orders`, { item: 'pen' }, { key });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('x-patched')).toBe('yes');
      expect(await again.json()).toEqual({ got: { item: 'pen' } });
      expect(patchedEnds).toBe(2);
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});

describe('Express 5: a handler that fails around its answer', () => {
  async function app(extraRoutes: number) {
    const sqlite = tempSqliteStore();
    const server = express();
    server.use(express.json());
    server.use(expressIdempotencyKey({ store: sqlite.store }));
    let runs = 0;
    server.post('/answer-then-throw', async (_req, res) => {
      runs++;
      res.status(201).json({ ok: 1 });
      throw new Error('after the answer');
    });
    server.post('/partial-then-throw', (_req, res) => {
      runs++;
      res.write('partial');
      throw new Error('halfway');
    });
    // More layers after the route: Express's error handler then runs before the answer is sent.
    for (let i = 0; i < extraRoutes; i++) server.post(`/other-${i}`, (_req, res) => res.end());
    const http = createServer(server);
    const url = await listen(http);
    return {
      url,
      runs: () => runs,
      async close() {
        await close(http);
        await sqlite.cleanup();
      },
    };
  }

  it('answers then throws: the first client gets the answer that was stored, not a 500 around it', async () => {
    const a = await app(3);
    try {
      const headers = {
        'idempotency-key': newKey('answer-throw'),
        'content-type': 'application/json',
      };
      const first = await nodeRequest(`${a.url}/answer-then-throw`, { headers, body: '{}' });
      expect(first.status).toBe(201);
      expect(first.headers['content-type']).toMatch(/application\/json/);
      expect(first.headers['content-length']).toBe('8');
      expect(first.body).toBe('{"ok":1}');
      const again = await nodeRequest(`${a.url}/answer-then-throw`, { headers, body: '{}' });
      expect(again).toMatchObject({ status: 201, body: '{"ok":1}' });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(a.runs()).toBe(1);
    } finally {
      await a.close();
    }
  });

  it('writes part of a body then throws: a 500 whose length is the bytes sent, and the key freed', async () => {
    const a = await app(3);
    try {
      const headers = {
        'idempotency-key': newKey('partial-throw'),
        'content-type': 'application/json',
      };
      const first = await nodeRequest(`${a.url}/partial-then-throw`, { headers, body: '{}' });
      expect(first.status).toBe(500);
      expect(Number(first.headers['content-length'])).toBe(Buffer.byteLength(first.body));
      await nodeRequest(`${a.url}/partial-then-throw`, { headers, body: '{}' });
      expect(a.runs()).toBe(2);
    } finally {
      await a.close();
    }
  });

  it('a held answer keeps its header names as given, and a 304 keeps its length', async () => {
    const sqlite = tempSqliteStore();
    const server = express();
    server.use(expressIdempotencyKey({ store: sqlite.store }));
    server.post('/named', (_req, res) => {
      res.setHeader('X-Custom-Thing', 'one');
      res.status(201).json({ ok: 1 });
    });
    server.post('/not-modified', (_req, res) => {
      res.statusCode = 304;
      res.setHeader('ETag', '"v1"');
      res.setHeader('Content-Length', 123);
      res.end();
    });
    const http = createServer(server);
    const url = await listen(http);
    try {
      const named = await nodeRequest(`${url}/named`, {
        headers: { 'idempotency-key': newKey('named'), 'content-type': 'application/json' },
        body: '{}',
      });
      expect(named.rawHeaders).toContain('X-Custom-Thing');
      const notModified = await nodeRequest(`${url}/not-modified`, {
        headers: { 'idempotency-key': newKey('304'), 'content-type': 'application/json' },
        body: '{}',
      });
      expect(notModified.status).toBe(304);
      expect(notModified.headers['content-length']).toBe('123');
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});
