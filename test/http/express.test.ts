import { createServer } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { describe, expect, it } from 'vitest';
import { idempotencyContext } from '../../src/http/context.js';
import { expressIdempotencyKey } from '../../src/http/express.js';
import type { OrderBody, TestApp } from './support/app.js';
import { tempSqliteStore } from './support/app.js';
import { close, listen, nodeRequest } from './support/net.js';
import { type CommonOptions, describeAdapterScenarios, newKey, post } from './support/scenarios.js';

function routes(server: express.Express, app: TestApp): void {
  server.get('/orders', (_req, res) => {
    res.send('listed');
  });
  server.post('/orders', async (req: Request, res: Response) => {
    const result = await app.handle({
      key: req.get('idempotency-key'),
      tenant: req.get('x-tenant'),
      body: req.body as OrderBody,
      ctx: idempotencyContext(req),
    });
    res.status(result.status).set(result.headers).send(result.body);
  });
  server.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
}

/** The usual order: the body parser first, the middleware fingerprints `req.body`. */
async function startAfterParser(app: TestApp, options: CommonOptions) {
  const server = express();
  server.use(express.json());
  server.use(expressIdempotencyKey<Request>({ ...options, scope: (req) => req.get('x-tenant') }));
  routes(server, app);
  const http = createServer(server);
  const url = await listen(http);
  return { url, close: () => close(http) };
}

/** The other order: the middleware reads the raw body and puts it back for the parser. */
async function startBeforeParser(app: TestApp, options: CommonOptions) {
  const server = express();
  server.use(expressIdempotencyKey<Request>({ ...options, scope: (req) => req.get('x-tenant') }));
  server.use(express.json());
  routes(server, app);
  const http = createServer(server);
  const url = await listen(http);
  return { url, close: () => close(http) };
}

describeAdapterScenarios('Express 5 (after express.json)', startAfterParser);
describeAdapterScenarios('Express 5 (before express.json)', startBeforeParser);

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
