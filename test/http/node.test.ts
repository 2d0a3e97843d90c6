import { createServer, type IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { idempotencyContext } from '../../src/http/context.js';
import { nodeIdempotencyKey } from '../../src/http/node.js';
import type { OrderBody, TestApp } from './support/app.js';
import { tempSqliteStore } from './support/app.js';
import { close, listen, nodeRequest } from './support/net.js';
import { type CommonOptions, describeAdapterScenarios, newKey, post } from './support/scenarios.js';

async function readJson(req: IncomingMessage): Promise<OrderBody> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as OrderBody;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

async function start(app: TestApp, options: CommonOptions) {
  const listenerErrors: unknown[] = [];
  const server = createServer(
    nodeIdempotencyKey(
      async (req, res) => {
        if (req.method === 'GET') {
          res.end('listed');
          return;
        }
        const body = await readJson(req);
        const result = await app.handle({
          key: header(req, 'idempotency-key'),
          tenant: header(req, 'x-tenant'),
          body,
          ctx: idempotencyContext(req),
        });
        res.writeHead(result.status, result.headers).end(result.body);
      },
      {
        ...options,
        scope: (req) => header(req, 'x-tenant'),
        onListenerError: (error) => listenerErrors.push(error),
      },
    ),
  );
  const url = await listen(server);
  return { url, close: () => close(server) };
}

describeAdapterScenarios('node:http', start);

describe('node:http: the body is put back for the listener', () => {
  it('hands the listener every byte of a chunked body, and streams that write piecewise are held whole', async () => {
    const sqlite = tempSqliteStore();
    const seen: string[] = [];
    const server = createServer(
      nodeIdempotencyKey(
        async (req, res) => {
          const chunks: Buffer[] = [];
          for await (const chunk of req) chunks.push(chunk as Buffer);
          seen.push(Buffer.concat(chunks).toString('utf8'));
          res.statusCode = 200;
          res.setHeader('content-type', 'text/plain');
          res.write('part one, ');
          res.write(Buffer.from('part two'));
          res.end();
        },
        { store: sqlite.store },
      ),
    );
    const url = await listen(server);
    try {
      const key = newKey('chunked');
      const body = 'x'.repeat(100_000);
      const first = await nodeRequest(url, {
        headers: { 'idempotency-key': key },
        body,
        chunked: true,
      });
      expect(first.status).toBe(200);
      expect(first.body).toBe('part one, part two');
      expect(seen).toEqual([body]);
      const again = await post(url, body, { key });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.text()).toBe('part one, part two');
      expect(seen).toHaveLength(1);
    } finally {
      await close(server);
      await sqlite.cleanup();
    }
  });
});
