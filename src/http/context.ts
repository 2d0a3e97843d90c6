import type { IdempotencyContext } from '../idempotency/types.js';

const contexts = new WeakMap<object, IdempotencyContext>();

/**
 * The idempotency context of the request being handled: `step(name, work)` to run a piece of
 * work once per operation, `keyFor(name)` for a downstream API's own idempotency key, and the
 * `signal` that fires when the lease is lost. Pass what your framework hands your handler: a
 * `Request` (core, Hono's `c.req.raw`), Node's `IncomingMessage` (node:http, Express), Fastify's
 * request, or the Lambda event. `undefined` when the request is not guarded (a GET, or no key
 * where none is required).
 *
 * @example
 * app.post('/payments', async (req, res) => {
 *   const ctx = idempotencyContext(req);
 *   const charge = await ctx!.step('charge', () => psp.charge(req.body, { key: ctx!.keyFor('charge') }));
 *   res.status(201).json(charge);
 * });
 */
export function idempotencyContext(request: object): IdempotencyContext | undefined {
  return contexts.get(request);
}

/** Links `ctx` to each of `requests` for {@link idempotencyContext}. */
export function bindContext(ctx: IdempotencyContext, ...requests: readonly object[]): void {
  for (const request of requests) contexts.set(request, ctx);
}
