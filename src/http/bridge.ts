import type { IdempotencyContext } from '../idempotency/types.js';
import type { CoreInput, HandledResponse, IdempotencyCore } from './idempotency-key.js';
import type { ResponseParts } from './stored-response.js';

/**
 * The core is one async call around the handler; hook-based frameworks (Fastify, middy) split
 * the same request into "before" and "after" callbacks. A bridge runs the core from the
 * "before" hook and parks it where it calls the handler, until the "after" hook delivers the
 * handler's response (or its error):
 *
 *   before: start ──► first ──proceed──► (framework runs the handler)
 *                          └─answered──► reply with handled.response (replay, problem)
 *   after:  deliver(response) ──► the core stores or releases ──► handled
 *   error:  fail(error) ──► the core releases the key
 */
export interface Bridge {
  /** How the core went on: to the handler (with its context and body), or answered itself. */
  readonly first: Promise<
    | { kind: 'proceed'; ctx: IdempotencyContext | undefined; body: Uint8Array | undefined }
    | { kind: 'answered'; handled: HandledResponse }
  >;
  /** Whether the handler was called (and a response or error is expected). */
  readonly proceeded: boolean;
  /** Whether `deliver` or `fail` was called. */
  readonly settled: boolean;
  /** Hands the handler's response to the core; settles when it was stored or released. */
  deliver(response: Response | ResponseParts): Promise<HandledResponse>;
  /** Hands the handler's error to the core, which releases the key; never throws. */
  fail(error: unknown): Promise<void>;
}

/** Starts the core on `input`; see {@link Bridge}. */
export function startBridge<S>(core: IdempotencyCore<S>, input: CoreInput<S>): Bridge {
  let proceed!: (value: {
    ctx: IdempotencyContext | undefined;
    body: Uint8Array | undefined;
  }) => void;
  let deliverResponse!: (response: Response | ResponseParts) => void;
  let failHandler!: (error: unknown) => void;
  let proceeded = false;
  let settled = false;
  const proceeding = new Promise<{
    ctx: IdempotencyContext | undefined;
    body: Uint8Array | undefined;
  }>((resolve) => {
    proceed = resolve;
  });
  const handlerResult = new Promise<Response | ResponseParts>((resolve, reject) => {
    deliverResponse = resolve;
    failHandler = reject;
  });
  const pending = core.run(input, (ctx, body) => {
    proceeded = true;
    proceed({ ctx, body });
    return handlerResult;
  });
  // Awaited by `first`, `deliver` or `fail`; never left unhandled.
  pending.catch(() => undefined);

  return {
    first: Promise.race([
      proceeding.then((p) => ({ kind: 'proceed' as const, ...p })),
      pending.then((handled) => ({ kind: 'answered' as const, handled })),
    ]),
    get proceeded() {
      return proceeded;
    },
    get settled() {
      return settled;
    },
    deliver(response) {
      settled = true;
      deliverResponse(response);
      return pending;
    },
    async fail(error) {
      settled = true;
      failHandler(error);
      await pending.catch(() => undefined);
    },
  };
}
