import { InvalidArgumentError } from '../../errors.js';
import { TOO_LARGE, type TooLarge } from '../../http/body.js';
import { type CoreInput, createIdempotencyCore } from '../../http/idempotency-key.js';
import type { IdempotencyKeyOptions } from '../../http/options.js';
import {
  type ApiGatewayEventLike,
  type ApiGatewayV1EventLike,
  type ApiGatewayV1Result,
  type ApiGatewayV2EventLike,
  type ApiGatewayV2Result,
  type LambdaContextLike,
  eventBody,
  eventKeyHeader,
  eventMethod,
  eventUrl,
  isV1Event,
  isV2Event,
  responseToV1Result,
  responseToV2Result,
  v1ResultToResponse,
  v2ResultToResponse,
} from './events.js';

/** An async Lambda handler. */
export type LambdaApiHandler<E, C extends LambdaContextLike, R> = (
  event: E,
  context: C,
) => Promise<R>;

/**
 * The core's view of an API Gateway event. The Lambda's remaining time bounds the lease (a
 * crashed or timed-out invocation frees the key when the platform would have killed it) and
 * any wait for an in-progress twin.
 */
export function eventInput<E extends ApiGatewayEventLike>(
  event: E,
  context: LambdaContextLike | undefined,
): CoreInput<E> {
  const input: CoreInput<E> = {
    method: eventMethod(event),
    url: eventUrl(event),
    keyHeader: eventKeyHeader(event),
    source: event,
    readBody: (limit) => Promise.resolve(boundedBody(event, limit)),
    bind: [event],
  };
  const remaining = remainingMs(context);
  if (remaining !== undefined) input.remainingMs = remaining;
  return input;
}

function boundedBody(event: ApiGatewayEventLike, limit: number): Uint8Array | TooLarge {
  const body = eventBody(event);
  return body.byteLength > limit ? TOO_LARGE : body;
}

/** The invocation's remaining time, when the context can tell. */
export function remainingMs(context: LambdaContextLike | undefined): number | undefined {
  const get = context?.getRemainingTimeInMillis;
  if (typeof get !== 'function') return undefined;
  const ms = get.call(context);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

type Version = 'v1' | 'v2' | 'auto';

function wrap<E extends ApiGatewayEventLike, C extends LambdaContextLike, R>(
  version: Version,
  handler: LambdaApiHandler<E, C, R>,
  options: IdempotencyKeyOptions<E>,
): LambdaApiHandler<E, C, R | ApiGatewayV1Result | ApiGatewayV2Result> {
  if (typeof handler !== 'function') {
    throw new InvalidArgumentError(
      'the Lambda handler must be a function (event, context) => Promise',
    );
  }
  const core = createIdempotencyCore<E>(options);
  return async function idempotentApiGatewayHandler(event, context) {
    const v2 = isV2Event(event);
    if (
      (version === 'v1' && !isV1Event(event)) ||
      (version === 'v2' && !v2) ||
      (!v2 && !isV1Event(event))
    ) {
      throw new InvalidArgumentError(
        `expected an API Gateway ${version === 'v2' ? 'HTTP API (payload format 2.0)' : version === 'v1' ? 'REST API (payload format 1.0)' : 'proxy'} event`,
      );
    }
    if (!core.guards(eventMethod(event))) return handler(event, context);
    let ran: { value: R } | undefined;
    const handled = await core.run(eventInput(event, context), async () => {
      const value = await handler(event, context);
      ran = { value };
      return v2 ? v2ResultToResponse(value) : v1ResultToResponse(value as ApiGatewayV1Result);
    });
    // The handler's own result, untouched: what API Gateway would have got without us.
    if (handled.origin === 'handler' && ran !== undefined) return ran.value;
    const answer = handled.parts ?? handled.response;
    return v2 ? responseToV2Result(answer) : responseToV1Result(answer);
  };
}

/**
 * Wraps an API Gateway REST API (payload format 1.0) proxy handler with the Idempotency-Key
 * semantics of `reprocess/http`: 400 without a valid key, 422 on a different body, 409 with
 * Retry-After while the first request runs, the stored result replayed with
 * `Idempotent-Replayed: true`, 5xx and thrown errors releasing the key. Base64 bodies and
 * multi-value headers are understood. `idempotencyContext(event)` gives the handler its steps.
 *
 * @example
 * export const handler = idempotentRestApiHandler(async (event) => ({
 *   statusCode: 201, body: JSON.stringify(await createOrder(JSON.parse(event.body ?? '{}'))),
 * }), { store, scope: (event) => event.requestContext.authorizer?.principalId });
 */
export function idempotentRestApiHandler<
  E extends ApiGatewayV1EventLike,
  C extends LambdaContextLike,
  R extends ApiGatewayV1Result,
>(
  handler: LambdaApiHandler<E, C, R>,
  options: IdempotencyKeyOptions<E>,
): LambdaApiHandler<E, C, R | ApiGatewayV1Result> {
  return wrap('v1', handler, options) as LambdaApiHandler<E, C, R | ApiGatewayV1Result>;
}

/**
 * Wraps an API Gateway HTTP API (payload format 2.0) handler; see
 * {@link idempotentRestApiHandler}. Cookies come and go through the event's `cookies` and the
 * result's `cookies`; a handler returning a plain string or object is treated as API Gateway
 * treats it (status 200, JSON).
 */
export function idempotentHttpApiHandler<
  E extends ApiGatewayV2EventLike,
  C extends LambdaContextLike,
  R,
>(
  handler: LambdaApiHandler<E, C, R>,
  options: IdempotencyKeyOptions<E>,
): LambdaApiHandler<E, C, R | ApiGatewayV2Result> {
  return wrap('v2', handler, options) as LambdaApiHandler<E, C, R | ApiGatewayV2Result>;
}

/**
 * Wraps a handler that serves both kinds of API Gateway events (one function behind a REST
 * API and an HTTP API): the event's shape picks the conversion.
 */
export function idempotentApiGatewayHandler<
  E extends ApiGatewayEventLike,
  C extends LambdaContextLike,
  R,
>(
  handler: LambdaApiHandler<E, C, R>,
  options: IdempotencyKeyOptions<E>,
): LambdaApiHandler<E, C, R | ApiGatewayV1Result | ApiGatewayV2Result> {
  return wrap('auto', handler, options);
}
