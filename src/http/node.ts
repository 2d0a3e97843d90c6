import type { IncomingMessage, ServerResponse } from 'node:http';
import { observe } from '../observe.js';
import { type CoreInput, type IdempotencyCore, createIdempotencyCore } from './idempotency-key.js';
import { readNodeBody } from './node-body.js';
import {
  type NodeResponseCapture,
  captureNodeResponse,
  sendNodeResponse,
} from './node-response.js';
import type { IdempotencyKeyOptions } from './options.js';
import type { ResponseParts } from './stored-response.js';

/** A plain `node:http` request listener. */
export type NodeRequestListener<Req extends IncomingMessage = IncomingMessage> = (
  req: Req,
  res: ServerResponse,
) => void | Promise<void>;

/** Options of {@link nodeIdempotencyKey}. */
export interface NodeIdempotencyKeyOptions<Req extends IncomingMessage = IncomingMessage>
  extends IdempotencyKeyOptions<Req> {
  /**
   * Told when the listener throws (the client gets a plain 500 and the key is released).
   * Default: `console.error`, as an unwrapped listener's crash would be visible too.
   */
  onListenerError?: (error: unknown, req: Req) => void;
}

/**
 * Wraps a plain `node:http` request listener with the Idempotency-Key middleware. The body of
 * a guarded request is read (bounded) and put back, so the listener reads `req` as usual;
 * what the listener writes is held until it calls `end`, then stored and sent. Use
 * `idempotencyContext(req)` inside the listener for steps.
 *
 * @example
 * http.createServer(nodeIdempotencyKey(async (req, res) => {
 *   const order = await createOrder(await json(req));
 *   res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(order));
 * }, { store, scope: (req) => String(req.headers['x-tenant'] ?? '') || undefined }));
 */
export function nodeIdempotencyKey<Req extends IncomingMessage = IncomingMessage>(
  listener: NodeRequestListener<Req>,
  options: NodeIdempotencyKeyOptions<Req>,
): (req: Req, res: ServerResponse) => Promise<void> {
  const core = createIdempotencyCore<Req>(options, ['onListenerError']);
  const report =
    options.onListenerError ??
    ((error: unknown) => console.error('reprocess/http: the request listener failed', error));
  return async function idempotentListener(req, res) {
    if (!core.guards(req.method ?? 'GET')) {
      await listener(req, res);
      return;
    }
    // Headers set before the listener ran (an outer CORS wrapper): kept on a plain 500.
    const earlier = res.getHeaders();
    await runNode(core, nodeInput(req, req.url ?? '/'), res, (capture) => {
      const ran = Promise.resolve().then(() => listener(req, res));
      ran.catch((error: unknown) => {
        // A listener that fails after it answered: its answer stands; say so.
        if (capture.ended) observe(report, error, req);
      });
      return Promise.race([capture.done, ran.then(() => capture.done)]);
    }).catch((error: unknown) => {
      observe(report, error, req);
      if (!res.headersSent) {
        // A plain 500: none of the failed listener's headers (a length, a cookie) go with it,
        // those set before it ran do.
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        for (const [name, value] of Object.entries(earlier)) {
          if (value !== undefined) res.setHeader(name, value);
        }
        res.statusCode = 500;
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.end('Internal Server Error');
      } else {
        res.destroy();
      }
    });
  };
}

/** The core's view of a Node request. */
export function nodeInput<Req extends IncomingMessage>(req: Req, url: string): CoreInput<Req> {
  return {
    method: req.method ?? 'GET',
    url,
    keyHeader: req.headers['idempotency-key'],
    source: req,
    readBody: (limit) => readNodeBody(req, limit),
    bind: [req],
  };
}

/**
 * Runs the core for a Node request: `run` starts the rest of the chain (the capture is live)
 * and settles with the captured response. Sends the outcome. Rejects with what the chain or
 * the core threw (the capture is released first).
 */
export async function runNode<S>(
  core: IdempotencyCore<S>,
  input: CoreInput<S>,
  res: ServerResponse,
  run: (capture: NodeResponseCapture) => Promise<ResponseParts>,
): Promise<void> {
  let capture: NodeResponseCapture | undefined;
  try {
    const handled = await core.run(input, () => {
      capture = captureNodeResponse(res);
      return run(capture);
    });
    if (handled.origin === 'handler' && capture !== undefined) {
      capture.flush();
      return;
    }
    capture?.release();
    await sendNodeResponse(res, handled);
  } catch (error) {
    capture?.release();
    throw error;
  }
}
