import { Buffer } from 'node:buffer';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { TOO_LARGE, toBuffer } from './body.js';
import { type Bridge, startBridge } from './bridge.js';
import { type HandledResponse, createIdempotencyCore } from './idempotency-key.js';
import { readNodeStream } from './node-body.js';
import type { IdempotencyKeyOptions } from './options.js';
import { isNullBodyStatus } from './stored-response.js';

/**
 * The parts of a Fastify request the plugin reads. Structural, so that importing
 * `reprocess/http` never needs `fastify`; pass `FastifyRequest` as the type argument to get
 * your own request type in `scope` and `route`.
 */
export interface FastifyRequestLike {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  raw: IncomingMessage;
}

/** The parts of a Fastify reply the plugin uses. */
export interface FastifyReplyLike {
  statusCode: number;
  raw: ServerResponse;
  code(statusCode: number): unknown;
  header(name: string, value: unknown): unknown;
  getHeaders(): Record<string, number | string | string[] | undefined>;
  send(payload?: unknown): unknown;
}

/** The parts of a Fastify instance the plugin uses. */
export interface FastifyInstanceLike {
  addHook(name: string, hook: (...args: never[]) => unknown): unknown;
}

/** A Fastify plugin: register it with `app.register(plugin)`. */
export type FastifyIdempotencyPlugin = ((instance: object) => Promise<void>) & {
  [key: symbol]: unknown;
};

/**
 * The Idempotency-Key middleware as a Fastify 5 plugin. Its hooks apply to the context it is
 * registered in (it is not encapsulated): register it on the app, or inside a plugin with the
 * routes it guards. The raw body is read once in `preParsing` (bounded) and handed on to
 * Fastify's parser; the reply, errors serialized by Fastify included, is stored (or the key
 * released on 5xx) in `onSend`. In a handler, `idempotencyContext(request)` gives the steps.
 * `scope` runs in `preParsing`, so authenticate in an `onRequest` hook (as @fastify/jwt's
 * `request.jwtVerify()` usually is) for the principal to be known by then.
 *
 * @example
 * await app.register(fastifyIdempotencyKey<FastifyRequest>({ store, scope: (req) => req.user.id }));
 * app.post('/orders', async (req, reply) => reply.code(201).send(await createOrder(req.body)));
 */
export function fastifyIdempotencyKey<Req extends FastifyRequestLike = FastifyRequestLike>(
  options: IdempotencyKeyOptions<Req>,
): FastifyIdempotencyPlugin {
  const core = createIdempotencyCore<Req>(options);
  const bridges = new WeakMap<object, Bridge>();
  /** The payload the first onSend of a guarded reply hands on, once stored. */
  const sending = new WeakMap<object, Promise<unknown>>();

  async function preParsing(
    request: Req,
    reply: FastifyReplyLike,
    payload: NodeJS.ReadableStream,
  ): Promise<NodeJS.ReadableStream | undefined> {
    if (!core.guards(request.method)) return undefined;
    let replacement: NodeJS.ReadableStream | undefined;
    const bridge = startBridge(core, {
      method: request.method,
      url: request.url,
      keyHeader: request.headers['idempotency-key'],
      source: request,
      async readBody(limit) {
        const declared = Number(request.headers['content-length']);
        if (Number.isFinite(declared) && declared > limit) return TOO_LARGE;
        const body = await readNodeStream(payload, limit);
        if (body !== TOO_LARGE) replacement = replay(body);
        return body;
      },
      bind: [request, request.raw],
    });
    bridges.set(request, bridge);
    const first = await bridge.first;
    if (first.kind === 'proceed') return replacement;
    await sendReply(reply, first.handled);
    await finished(reply.raw).catch(() => undefined);
    return undefined;
  }

  function onSend(request: Req, reply: FastifyReplyLike, payload: unknown): Promise<unknown> {
    const bridge = bridges.get(request);
    if (bridge === undefined || !bridge.proceeded) return Promise.resolve(payload);
    // A second send of the same reply: an async handler that called reply.send() without
    // returning reply, whose promise resolved while the first send was being stored, makes
    // Fastify send again (with undefined). That second send hands on what the first does, so
    // whichever writes first, the client gets the response that was stored.
    const first = sending.get(request);
    // Only that empty second send: anything else (an error Fastify sends because a later hook
    // failed) goes out as it is.
    if (first !== undefined && payload === undefined) return first;
    if (bridge.settled) return Promise.resolve(payload);
    const stored = store(bridge, reply, payload);
    sending.set(request, stored);
    return stored;
  }

  async function store(
    bridge: Bridge,
    reply: FastifyReplyLike,
    payload: unknown,
  ): Promise<unknown> {
    let bytes: Uint8Array | null;
    try {
      bytes = await payloadBytes(payload);
    } catch (error) {
      await bridge.fail(error);
      throw error;
    }
    const status = reply.statusCode;
    await bridge.deliver({
      status,
      headers: toHeaders(reply.getHeaders()),
      body: isNullBodyStatus(status) ? null : bytes,
    });
    return isReadable(payload) ? bytes : payload;
  }

  async function onDone(request: Req, reply?: FastifyReplyLike): Promise<void> {
    const bridge = bridges.get(request);
    if (!bridge?.proceeded || bridge.settled) return;
    const raw = reply?.raw;
    if (raw?.headersSent === true) {
      // Answered without onSend: the handler hijacked the reply and wrote to the connection.
      // It ran, so the key must not be freed for a retry to run it again; its body was never
      // seen, so a repeat gets the not-replayable problem (a 5xx still releases the key).
      await bridge
        .deliver({
          status: raw.statusCode,
          headers: toHeaders(raw.getHeaders() as Record<string, number | string | string[]>),
          body: null,
          bodyUnseen: true,
        })
        .catch(() => undefined);
      return;
    }
    await bridge.fail(new Error('reprocess/http: the request ended without a reply'));
  }

  const plugin = async function reprocessIdempotencyKey(instance: object): Promise<void> {
    const app = instance as FastifyInstanceLike;
    app.addHook('preParsing', preParsing as (...args: never[]) => unknown);
    app.addHook('onSend', onSend as (...args: never[]) => unknown);
    app.addHook('onResponse', onDone as (...args: never[]) => unknown);
    // An async hook of one argument: Fastify refuses an async onRequestAbort taking two.
    const onAbort = async (request: Req): Promise<void> => onDone(request);
    app.addHook('onRequestAbort', onAbort as (...args: never[]) => unknown);
  } as FastifyIdempotencyPlugin;
  // What fastify-plugin sets: hooks apply to the registering context, and a readable name.
  plugin[Symbol.for('skip-override')] = true;
  plugin[Symbol.for('fastify.display-name')] = 'reprocess-idempotency-key';
  return plugin;
}

/** A stream handing `body` on to Fastify's body parser. */
function replay(body: Uint8Array): NodeJS.ReadableStream {
  const stream = Readable.from(body.byteLength === 0 ? [] : [Buffer.from(body)]);
  // Fastify checks the body length against content-length with this when it is set.
  (stream as unknown as { receivedEncodedLength: number }).receivedEncodedLength = body.byteLength;
  return stream;
}

async function sendReply(reply: FastifyReplyLike, answer: HandledResponse): Promise<void> {
  const parts = answer.parts;
  const headers = parts?.headers ?? answer.response.headers;
  reply.code(parts?.status ?? answer.response.status);
  for (const [name, value] of headers) {
    if (name !== 'set-cookie') reply.header(name, value);
  }
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) reply.header('set-cookie', cookies);
  const body =
    parts !== undefined
      ? parts.body === null
        ? undefined
        : toBuffer(parts.body)
      : answer.response.body === null
        ? undefined
        : Buffer.from(await answer.response.arrayBuffer());
  // An empty body goes as none: Fastify gives a Buffer without a content-type one of its own
  // (application/octet-stream), which a first answer without a body (a redirect) never had.
  reply.send(body === undefined || body.byteLength === 0 ? undefined : body);
}

function isReadable(payload: unknown): payload is AsyncIterable<unknown> {
  return (
    typeof payload === 'object' &&
    payload !== null &&
    typeof (payload as { pipe?: unknown }).pipe === 'function' &&
    Symbol.asyncIterator in payload
  );
}

async function payloadBytes(payload: unknown): Promise<Uint8Array | null> {
  if (payload === null || payload === undefined) return null;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload instanceof Uint8Array) return payload;
  if (isReadable(payload)) {
    const chunks: Buffer[] = [];
    for await (const chunk of payload) {
      chunks.push(
        typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array),
      );
    }
    return Buffer.concat(chunks);
  }
  return Buffer.from(String(payload), 'utf8');
}

function toHeaders(values: Record<string, number | string | string[] | undefined>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, String(value));
  }
  return headers;
}
