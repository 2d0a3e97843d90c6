import type { Server } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { describe, expect, it } from 'vitest';
import { idempotencyContext } from '../../src/http/context.js';
import { honoIdempotencyKey } from '../../src/http/hono.js';
import type { OrderBody, TestApp } from './support/app.js';
import { tempSqliteStore } from './support/app.js';
import { close, listen } from './support/net.js';
import { type CommonOptions, describeAdapterScenarios, newKey, post } from './support/scenarios.js';

async function serveOn(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  const url = await listen(server);
  return { url, close: () => close(server) };
}

async function start(app: TestApp, options: CommonOptions) {
  const hono = new Hono();
  hono.use(
    '/orders',
    honoIdempotencyKey<Context>({ ...options, scope: (c) => c.req.header('x-tenant') }),
  );
  hono.get('/orders', (c) => c.text('listed'));
  hono.post('/orders', async (c) => {
    const result = await app.handle({
      key: c.req.header('idempotency-key'),
      tenant: c.req.header('x-tenant'),
      body: (await c.req.json()) as OrderBody,
      ctx: idempotencyContext(c.req.raw),
    });
    return c.body(result.body, result.status as ContentfulStatusCode, result.headers);
  });
  hono.onError((error, c) => c.json({ error: error.message }, 500));
  return serveOn(hono);
}

describeAdapterScenarios('Hono 4 (@hono/node-server)', start);

describe('Hono 4: the handler reads the body through Hono', () => {
  it('gets a fresh request carrying the body (text, json and arrayBuffer all work)', async () => {
    const sqlite = tempSqliteStore();
    const hono = new Hono();
    let runs = 0;
    hono.post('/echo', honoIdempotencyKey({ store: sqlite.store }), async (c) => {
      runs++;
      const bytes = (await c.req.arrayBuffer()).byteLength;
      return c.json({ bytes, text: await c.req.text() }, 201);
    });
    const server = await serveOn(hono);
    try {
      const key = newKey('echo');
      const first = await post(`${server.url}/echo`, 'hello', { key });
      expect(first.status).toBe(201);
      expect(await first.json()).toEqual({ bytes: 5, text: 'hello' });
      const again = await post(`${server.url}/echo`, 'hello', { key });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.json()).toEqual({ bytes: 5, text: 'hello' });
      expect(runs).toBe(1);
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });
});
