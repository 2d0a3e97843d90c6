import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { honoIdempotencyKey } from '../../src/http/hono.js';
import { tempSqliteStore } from './support/app.js';
import { describeAdapterScenarios, newKey, post } from './support/scenarios.js';
import { serveHono, startHono } from './support/servers.js';

describeAdapterScenarios('Hono 4 (@hono/node-server)', startHono);

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
    const server = await serveHono(hono);
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
