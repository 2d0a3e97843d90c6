import { TOO_LARGE, type TooLarge } from './body.js';
import { bindContext } from './context.js';
import { createIdempotencyCore, readRequestBody, withBody } from './idempotency-key.js';
import type { IdempotencyKeyOptions } from './options.js';

/**
 * The parts of a Hono context the middleware uses. Structural, so that importing
 * `reprocess/http` never needs `hono`; pass `Context` (or `Context<Env>`) as the type argument
 * to get your own context in `scope` and `route`.
 */
export interface HonoContextLike {
  /** `arrayBuffer` is Hono's, which answers from its cache when a validator read the body. */
  req: { raw: Request; arrayBuffer?: () => Promise<ArrayBuffer> };
  res: Response;
}

/** A Hono middleware. */
export type HonoMiddleware<C extends HonoContextLike = HonoContextLike> = (
  c: C,
  next: () => Promise<void>,
) => Promise<Response | undefined>;

/**
 * The Idempotency-Key middleware for Hono 4. The body of a guarded request is read once
 * (bounded) and the handler gets a fresh `c.req.raw` carrying it, so `c.req.json()` works as
 * usual; the handler's response, errors turned into responses by `app.onError` included, is
 * stored (or the key released on 5xx) before it is sent. In a handler,
 * `idempotencyContext(c.req.raw)` gives the steps.
 *
 * @example
 * app.use('/orders/*', honoIdempotencyKey<Context>({ store, scope: (c) => c.get('tenant') }));
 * app.post('/orders', async (c) => c.json(await createOrder(await c.req.json()), 201));
 */
export function honoIdempotencyKey<C extends HonoContextLike = HonoContextLike>(
  options: IdempotencyKeyOptions<C>,
): HonoMiddleware<C> {
  const core = createIdempotencyCore<C>(options);
  return async function idempotencyKeyMiddleware(c, next) {
    const request = c.req.raw;
    if (!core.guards(request.method)) {
      await next();
      return undefined;
    }
    const handled = await core.run(
      {
        method: request.method,
        url: request.url,
        keyHeader: request.headers.get('idempotency-key'),
        source: c,
        readBody: (limit) => readHonoBody(c, request, limit),
        bind: [request, c],
      },
      async (ctx, body) => {
        if (body !== undefined) {
          const fresh = withBody(request, body);
          if (ctx) bindContext(ctx, fresh);
          c.req.raw = fresh;
        }
        await next();
        return c.res;
      },
    );
    if (handled.origin !== 'handler') {
      // Headers earlier middleware set with c.header() (a request id, an API version) go
      // with a replay or a problem as they went with the first answer, but only where ours
      // has none: a stored header (cache-control, location...) is the replay's. Reading c.res
      // makes Hono build its response from them; clearing it keeps Hono's own merge, which
      // would overwrite ours, from running.
      const response = handled.response;
      for (const [name, value] of c.res.headers) {
        if (!response.headers.has(name)) response.headers.append(name, value);
      }
      c.res = undefined as unknown as Response;
      c.res = response;
      return response;
    }
    // The handler's body was read to store it; send the buffered copy. Clearing first keeps
    // Hono from merging the old response's headers into it (they are the same headers).
    c.res = undefined as unknown as Response;
    c.res = handled.response;
    return undefined;
  };
}

/**
 * The request body: read from the request (bounded), or, when middleware before this one
 * (a validator) already read it, from Hono's cache of it; the stream itself is spent then.
 */
async function readHonoBody(
  c: HonoContextLike,
  request: Request,
  limit: number,
): Promise<Uint8Array | TooLarge> {
  if (!request.bodyUsed || c.req.arrayBuffer === undefined) return readRequestBody(request, limit);
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  return bytes.byteLength > limit ? TOO_LARGE : bytes;
}
