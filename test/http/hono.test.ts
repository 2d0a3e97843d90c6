import { Hono } from 'hono';
import { streamText } from 'hono/streaming';
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

describe('Hono 4: streams and headers of earlier middleware', () => {
  it('sends a streamText answer whole on the first run (no chunked framing beside a length)', async () => {
    const sqlite = tempSqliteStore();
    const hono = new Hono();
    hono.post('/rows', honoIdempotencyKey({ store: sqlite.store }), (c) =>
      streamText(c, async (stream) => {
        await stream.write('row1\n');
        await stream.write('row2\n');
      }),
    );
    const server = await serveHono(hono);
    try {
      const key = newKey('stream');
      const first = await post(`${server.url}/rows`, 'x', { key });
      expect(first.status).toBe(200);
      expect(await first.text()).toBe('row1\nrow2\n');
      const again = await post(`${server.url}/rows`, 'x', { key });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.text()).toBe('row1\nrow2\n');
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });

  it('keeps headers set with c.header() before it on replays and problems', async () => {
    const sqlite = tempSqliteStore();
    const hono = new Hono();
    hono.use(async (c, next) => {
      c.header('x-api-version', '2024-01');
      c.header('cache-control', 'no-store');
      await next();
    });
    hono.post('/orders', honoIdempotencyKey({ store: sqlite.store }), (c) => {
      c.header('cache-control', 'max-age=60');
      return c.json({ ok: true }, 201);
    });
    const server = await serveHono(hono);
    try {
      const key = newKey('headers');
      const first = await post(`${server.url}/orders`, '{}', { key });
      expect(first.headers.get('x-api-version')).toBe('2024-01');
      const again = await post(`${server.url}/orders`, '{}', { key });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('x-api-version')).toBe('2024-01');
      // A stored header is the replay's, not the earlier middleware's.
      expect(first.headers.get('cache-control')).toBe('max-age=60');
      expect(again.headers.get('cache-control')).toBe('max-age=60');
      const missing = await post(`${server.url}/orders`, '{}', {});
      expect(missing.status).toBe(400);
      expect(missing.headers.get('x-api-version')).toBe('2024-01');
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });
});

describe('Hono 4: mounted after a validator that read the body', () => {
  it("fingerprints the body from Hono's cache instead of failing on a spent stream", async () => {
    const sqlite = tempSqliteStore();
    const hono = new Hono();
    let runs = 0;
    hono.post(
      '/orders',
      async (c, next) => {
        await c.req.json(); // a validator reads the body first
        await next();
      },
      honoIdempotencyKey({ store: sqlite.store }),
      async (c) => {
        runs++;
        return c.json(await c.req.json(), 201);
      },
    );
    const server = await serveHono(hono);
    try {
      const key = newKey('validated');
      const first = await post(`${server.url}/orders`, '{"amount":10}', { key });
      expect(first.status).toBe(201);
      expect(await first.json()).toEqual({ amount: 10 });
      const again = await post(`${server.url}/orders`, '{"amount":10}', { key });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      const other = await post(`${server.url}/orders`, '{"amount":99}', { key });
      expect(other.status).toBe(422);
      expect(runs).toBe(1);
    } finally {
      await server.close();
      await sqlite.cleanup();
    }
  });
});
