import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { canonicalJson } from '../idempotency/canonical-json.js';
import { TOO_LARGE, type TooLarge } from './body.js';
import { createIdempotencyCore } from './idempotency-key.js';
import { readNodeBody } from './node-body.js';
import { nodeInput, runNode } from './node.js';
import type { IdempotencyKeyOptions } from './options.js';

/**
 * The parts of an Express request the middleware reads: Node's `IncomingMessage`, plus
 * `originalUrl` and `body` when Express and a body parser set them. Structural, so that
 * importing `reprocess/http` never needs `express` or its types.
 */
export interface ExpressRequestLike extends IncomingMessage {
  originalUrl?: string;
  body?: unknown;
}

/** Express's `next`. */
export type ExpressNext = (error?: unknown) => void;

/** An Express middleware. */
export type ExpressMiddleware<Req extends ExpressRequestLike = ExpressRequestLike> = (
  req: Req,
  res: ServerResponse,
  next: ExpressNext,
) => void;

/**
 * The Idempotency-Key middleware for Express 5. Mount it before or after your body parser:
 * after (the usual place), the parsed `req.body` is fingerprinted (a Buffer or string as is,
 * anything else as its canonical JSON, keys sorted); before, the raw body is read (bounded)
 * and put back for the parser. What the rest of the chain writes, errors turned into
 * responses by Express included, is held, stored (or the key released on 5xx) and then sent.
 *
 * @example
 * app.use(express.json());
 * app.use(expressIdempotencyKey<express.Request>({ store, scope: (req) => req.user?.id }));
 * app.post('/orders', (req, res) => { res.status(201).json(createOrder(req.body)); });
 */
export function expressIdempotencyKey<Req extends ExpressRequestLike = ExpressRequestLike>(
  options: IdempotencyKeyOptions<Req>,
): ExpressMiddleware<Req> {
  const core = createIdempotencyCore<Req>(options);
  return function idempotencyKeyMiddleware(req, res, next) {
    if (!core.guards(req.method ?? 'GET')) {
      next();
      return;
    }
    let continued = false;
    const input = nodeInput(req, req.originalUrl ?? req.url ?? '/');
    input.readBody = (limit) => readExpressBody(req, limit);
    runNode(core, input, res, (capture) => {
      continued = true;
      next();
      return capture.done;
    }).catch((error: unknown) => {
      if (!continued) {
        next(error);
        return;
      }
      // The chain already ran; Express cannot take a second `next`.
      if (!res.headersSent) {
        res.statusCode = 500;
        res.end();
      }
    });
  };
}

function readExpressBody(req: ExpressRequestLike, limit: number): Promise<Uint8Array | TooLarge> {
  const parsed = req.body;
  if (parsed === undefined) return readNodeBody(req, limit);
  const bytes = bodyBytes(parsed);
  return Promise.resolve(bytes.byteLength > limit ? TOO_LARGE : bytes);
}

function bodyBytes(body: unknown): Uint8Array {
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  // Parsed already: its canonical JSON (keys sorted), so a client that sends the same data
  // with its keys in another order is not told it reused the key with another body.
  return Buffer.from(canonicalJson(body), 'utf8');
}
