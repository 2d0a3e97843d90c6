/** API Gateway (REST v1 and HTTP API v2) handlers with the Idempotency-Key semantics of `reprocess/http`. */
export {
  idempotentRestApiHandler,
  idempotentHttpApiHandler,
  idempotentApiGatewayHandler,
  type LambdaApiHandler,
} from './api-gateway.js';
export {
  idempotencyKeyMiddy,
  type MiddyIdempotencyMiddleware,
  type MiddyRequestLike,
} from './middy.js';
export {
  eventToRequest,
  isV1Event,
  isV2Event,
  responseToV1Result,
  responseToV2Result,
  v1ResultToResponse,
  v2ResultToResponse,
  type ApiGatewayEventLike,
  type ApiGatewayV1EventLike,
  type ApiGatewayV1Result,
  type ApiGatewayV2EventLike,
  type ApiGatewayV2Result,
  type LambdaContextLike,
} from './events.js';
export { idempotencyContext } from '../../http/context.js';
