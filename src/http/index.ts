/**
 * `reprocess/http`: the Idempotency-Key middleware (standard Request/Response, node:http,
 * Express 5, Fastify 5, Hono 4) and a retrying `fetch`. Frameworks are optional peers: each
 * adapter uses structural types only, so importing this never loads a framework.
 */
export {
  idempotencyKey,
  createIdempotencyCore,
  readRequestBody,
  withBody,
  type IdempotencyKeyHandler,
  type IdempotencyCore,
  type CoreInput,
  type CoreNext,
  type Next,
  type HandledResponse,
  type ResponseOrigin,
  type RequestHints,
} from './idempotency-key.js';
export {
  type IdempotencyKeyOptions,
  type FingerprintInput,
  defaultShouldStore,
} from './options.js';
export { idempotencyContext } from './context.js';
export {
  parseIdempotencyKeyHeader,
  formatIdempotencyKey,
  IDEMPOTENCY_KEY_HEADER,
  MAX_HEADER_KEY_LENGTH,
  type ParsedKeyHeader,
} from './key-header.js';
export {
  PROBLEM_BASE,
  PROBLEM_CONTENT_TYPE,
  PROBLEM_TYPES,
  problemFor,
  problemResponse,
  type ProblemDetails,
  type ProblemType,
} from './problem.js';
export {
  RequestBodyTooLargeError,
  RequestNestedTooDeepError,
  ResponseNotReplayableError,
  HttpErrorCode,
} from './errors.js';
export {
  DEFAULT_REPLAY_HEADERS,
  REPLAYED_HEADER,
  toResponse,
  type ResponseLike,
  type ResponseParts,
} from './stored-response.js';
export {
  nodeIdempotencyKey,
  type NodeIdempotencyKeyOptions,
  type NodeRequestListener,
} from './node.js';
export {
  expressIdempotencyKey,
  type ExpressMiddleware,
  type ExpressNext,
  type ExpressRequestLike,
} from './express.js';
export {
  fastifyIdempotencyKey,
  type FastifyIdempotencyPlugin,
  type FastifyInstanceLike,
  type FastifyReplyLike,
  type FastifyRequestLike,
} from './fastify.js';
export { honoIdempotencyKey, type HonoContextLike, type HonoMiddleware } from './hono.js';
export {
  retryingFetch,
  createRetryingFetch,
  isRetryableResponse,
  type FetchLike,
  type RetryingFetchOptions,
  type RetryingRequestInit,
} from './retrying-fetch.js';
