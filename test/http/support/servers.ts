import { type IncomingMessage, createServer } from 'node:http';
import type { Server } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import express, { type NextFunction, type Request, type Response } from 'express';
import Fastify, { type FastifyRequest } from 'fastify';
import { type Context, Hono } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { idempotencyContext } from '../../../src/http/context.js';
import { expressIdempotencyKey } from '../../../src/http/express.js';
import { fastifyIdempotencyKey } from '../../../src/http/fastify.js';
import { honoIdempotencyKey } from '../../../src/http/hono.js';
import { nodeIdempotencyKey } from '../../../src/http/node.js';
import type { OrderBody, TestApp } from './app.js';
import { close, listen } from './net.js';
import type { CommonOptions } from './scenarios.js';

/*
 * The test endpoint on each adapter: `POST /orders` (JSON body, scope from `x-tenant`,
 * `TestApp.handle`) and `GET /orders` (`listed`), each read and answered the framework's way.
 */

function nodeHeader(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

export async function startNode(app: TestApp, options: CommonOptions) {
  const server = createServer(
    nodeIdempotencyKey(
      async (req, res) => {
        if (req.method === 'GET') {
          res.end('listed');
          return;
        }
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const result = await app.handle({
          key: nodeHeader(req, 'idempotency-key'),
          tenant: nodeHeader(req, 'x-tenant'),
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as OrderBody,
          ctx: idempotencyContext(req),
        });
        res.writeHead(result.status, result.headers).end(result.body);
      },
      {
        ...options,
        scope: (req) => nodeHeader(req, 'x-tenant'),
        // The throwing handler of the scenarios is expected; the client sees its 500.
        onListenerError: () => undefined,
      },
    ),
  );
  const url = await listen(server);
  return { url, close: () => close(server) };
}

function expressRoutes(server: express.Express, app: TestApp): void {
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
export async function startExpressAfterParser(app: TestApp, options: CommonOptions) {
  const server = express();
  server.use(express.json());
  server.use(expressIdempotencyKey<Request>({ ...options, scope: (req) => req.get('x-tenant') }));
  expressRoutes(server, app);
  const http = createServer(server);
  const url = await listen(http);
  return { url, close: () => close(http) };
}

/** The other order: the middleware reads the raw body and puts it back for the parser. */
export async function startExpressBeforeParser(app: TestApp, options: CommonOptions) {
  const server = express();
  server.use(expressIdempotencyKey<Request>({ ...options, scope: (req) => req.get('x-tenant') }));
  server.use(express.json());
  expressRoutes(server, app);
  const http = createServer(server);
  const url = await listen(http);
  return { url, close: () => close(http) };
}

function fastifyHeader(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}

export async function startFastify(app: TestApp, options: CommonOptions) {
  const server = Fastify();
  await server.register(
    fastifyIdempotencyKey<FastifyRequest>({
      ...options,
      scope: (req) => fastifyHeader(req, 'x-tenant'),
    }),
  );
  server.get('/orders', async () => 'listed');
  server.post('/orders', async (request, reply) => {
    const result = await app.handle({
      key: fastifyHeader(request, 'idempotency-key'),
      tenant: fastifyHeader(request, 'x-tenant'),
      body: request.body as OrderBody,
      ctx: idempotencyContext(request),
    });
    return reply.code(result.status).headers(result.headers).send(result.body);
  });
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => server.close() };
}

/** Serves a Hono app through @hono/node-server on an ephemeral port. */
export async function serveHono(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  const url = await listen(server);
  return { url, close: () => close(server) };
}

export async function startHono(app: TestApp, options: CommonOptions) {
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
  return serveHono(hono);
}
