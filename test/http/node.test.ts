import { unhandledDuring } from '../helpers/unhandled.js';
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { nodeIdempotencyKey } from '../../src/http/node.js';
import { tempSqliteStore } from './support/app.js';
import { close, listen, nodeRequest } from './support/net.js';
import { describeAdapterScenarios, newKey, post } from './support/scenarios.js';
import { startNode } from './support/servers.js';

describeAdapterScenarios('node:http', startNode);

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

describe('node:http: writeHead with headers as an array', () => {
  it('keeps a repeated name (two Set-Cookie, two Link) on the first answer, as Node does', async () => {
    const sqlite = tempSqliteStore();
    const server = createServer(
      nodeIdempotencyKey(
        (_req, res) => {
          res
            .writeHead(201, [
              'Set-Cookie',
              'a=1',
              'Set-Cookie',
              'b=2',
              'Link',
              '</a>',
              'Link',
              '</b>',
            ])
            .end('x');
        },
        { store: sqlite.store },
      ),
    );
    const url = await listen(server);
    try {
      const first = await post(url, 'x', { key: newKey('raw-head') });
      expect(first.status).toBe(201);
      expect(first.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
      expect(first.headers.get('link')).toBe('</a>, </b>');
    } finally {
      await close(server);
      await sqlite.cleanup();
    }
  });
});

describe('node:http: an onListenerError that fails itself', () => {
  it('still answers the plain 500, and leaves no unhandled rejection', async () => {
    const sqlite = tempSqliteStore();
    const guarded = nodeIdempotencyKey(
      async () => {
        throw new Error('listener bug');
      },
      {
        store: sqlite.store,
        onListenerError: () => {
          throw new Error('reporter bug');
        },
      },
    );
    const server = createServer((req, res) => void guarded(req, res));
    const url = await listen(server);
    try {
      let status: number | undefined;
      const unhandled = await unhandledDuring(async () => {
        const res = await nodeRequest(`${url}/x`, {
          headers: { 'idempotency-key': newKey('reporter'), 'content-type': 'application/json' },
          body: '{}',
        });
        status = res.status;
      });
      expect(status).toBe(500);
      expect(unhandled).toEqual([]);
    } finally {
      await close(server);
      await sqlite.cleanup();
    }
  });
});

describe('node:http: a listener that throws after setting headers', () => {
  it('gets a plain 500 with none of its headers: no stale length, no cookie', async () => {
    const sqlite = tempSqliteStore();
    const guarded = nodeIdempotencyKey(
      (_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.setHeader('content-length', '100');
        res.setHeader('set-cookie', 'session=abc');
        res.write('{"partial":');
        throw new Error('boom');
      },
      { store: sqlite.store, onListenerError: () => undefined },
    );
    // An outer wrapper's header (CORS), set before the listener ran, stays on the 500.
    const server = createServer((req, res) => {
      res.setHeader('access-control-allow-origin', '*');
      void guarded(req, res);
    });
    const url = await listen(server);
    try {
      const res = await nodeRequest(`${url}/x`, {
        headers: { 'idempotency-key': newKey('throw-headers'), 'content-type': 'application/json' },
        body: '{}',
      });
      expect(res.status).toBe(500);
      expect(res.body).toBe('Internal Server Error');
      // Framed by Node for the plain body, not by the listener's stale "100".
      expect(res.headers['content-length']).not.toBe('100');
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(res.headers['access-control-allow-origin']).toBe('*');
    } finally {
      await close(server);
      await sqlite.cleanup();
    }
  });
});
