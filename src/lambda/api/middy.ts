import { type Bridge, startBridge } from '../../http/bridge.js';
import { createIdempotencyCore } from '../../http/idempotency-key.js';
import type { IdempotencyKeyOptions } from '../../http/options.js';
import { eventInput, remainingMs } from './api-gateway.js';
import {
  type ApiGatewayEventLike,
  type ApiGatewayV1Result,
  type ApiGatewayV2Result,
  type LambdaContextLike,
  eventMethod,
  isV2Event,
  responseToV1Result,
  responseToV2Result,
  v1ResultToResponse,
  v2ResultToResponse,
} from './events.js';

/** The parts of a middy request the middleware uses (structural: `@middy/core` stays optional). */
export interface MiddyRequestLike<E> {
  event: E;
  context: LambdaContextLike;
  response: unknown;
  error: unknown;
}

/** A middy middleware object. */
export interface MiddyIdempotencyMiddleware<E> {
  readonly name: string;
  before(
    request: MiddyRequestLike<E>,
  ): Promise<ApiGatewayV1Result | ApiGatewayV2Result | undefined>;
  after(request: MiddyRequestLike<E>): Promise<void>;
  onError(request: MiddyRequestLike<E>): Promise<void>;
}

/**
 * The Idempotency-Key semantics of `reprocess/http` as a middy (v5, v6) middleware, for API
 * Gateway handlers that already use middy. `before` answers replays and problems itself (an
 * early response: the handler does not run); `after` stores the handler's result (or releases
 * the key on 5xx); `onError` releases the key and lets the error go on.
 *
 * Use it last, right before the handler, so that no other middleware's early response skips
 * its `after`. Should that still happen, the key is released when the invocation's time is
 * up, never held longer.
 *
 * @example
 * export const handler = middy(createOrder)
 *   .use(httpErrorHandler())
 *   .use(idempotencyKeyMiddy({ store, scope: (event) => event.requestContext.authorizer?.principalId }));
 */
export function idempotencyKeyMiddy<E extends ApiGatewayEventLike = ApiGatewayEventLike>(
  options: IdempotencyKeyOptions<E>,
): MiddyIdempotencyMiddleware<E> {
  const core = createIdempotencyCore<E>(options);
  // The guard timer must not keep a process alive (a test, a local run): unref the real one.
  const setGuard: (ms: number, callback: () => void) => () => void =
    options.clock === undefined
      ? (ms, callback) => {
          const timer = setTimeout(callback, ms);
          timer.unref();
          return () => clearTimeout(timer);
        }
      : options.clock.setTimer.bind(options.clock);
  const running = new WeakMap<object, { bridge: Bridge; cancel: () => void }>();

  async function settle(request: MiddyRequestLike<E>, error: unknown | undefined): Promise<void> {
    const entry = running.get(request);
    if (entry === undefined) return;
    running.delete(request);
    entry.cancel();
    if (!entry.bridge.proceeded || entry.bridge.settled) return;
    if (error !== undefined) {
      await entry.bridge.fail(error);
      return;
    }
    let response: Response;
    try {
      response = isV2Event(request.event)
        ? v2ResultToResponse(request.response)
        : v1ResultToResponse(request.response as ApiGatewayV1Result);
    } catch (invalid) {
      await entry.bridge.fail(invalid);
      throw invalid;
    }
    await entry.bridge.deliver(response);
  }

  return {
    name: 'reprocess-idempotency-key',
    async before(request) {
      const event = request.event;
      if (!core.guards(eventMethod(event))) return undefined;
      const bridge = startBridge(core, eventInput(event, request.context));
      const first = await bridge.first;
      if (first.kind === 'answered') {
        const response = first.handled.parts ?? first.handled.response;
        return isV2Event(event) ? responseToV2Result(response) : responseToV1Result(response);
      }
      const left = remainingMs(request.context);
      const cancel =
        left === undefined
          ? () => undefined
          : setGuard(left, () => {
              void settle(request, new Error('reprocess/lambda: the invocation ran out of time'));
            });
      running.set(request, { bridge, cancel });
      return undefined;
    },
    async after(request) {
      await settle(request, undefined);
    },
    async onError(request) {
      await settle(request, request.error ?? new Error('reprocess/lambda: the handler failed'));
    },
  };
}
