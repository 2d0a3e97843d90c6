import { createHash } from 'node:crypto';
import { elapsedOn } from '../clock.js';
import {
  ErrorCode,
  IdempotencyInProgressError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyMissingError,
  InvalidArgumentError,
  StoreUnavailableError,
  isReprocessError,
} from '../errors.js';
import { NestedTooDeepError, executeResolved, resolveOptions } from '../idempotency/index.js';
import type { ResolvedOptions } from '../idempotency/options.js';
import { observe } from '../observe.js';
import type {
  ExecuteOptions,
  IdempotencyContext,
  OperationIdentity,
} from '../idempotency/types.js';
import { TOO_LARGE, type TooLarge, bodyInit, readBounded } from './body.js';
import { bindContext } from './context.js';
import { RequestBodyTooLargeError, RequestNestedTooDeepError } from './errors.js';
import { parseIdempotencyKeyHeader } from './key-header.js';
import {
  type IdempotencyKeyOptions,
  type ResolvedHttpOptions,
  resolveHttpOptions,
} from './options.js';
import { problemFor, problemParts, retryAfterSeconds } from './problem.js';
import {
  type ResponseParts,
  type StoredResponse,
  captureResponse,
  isResponse,
  replayParts,
  toResponse,
} from './stored-response.js';

/*
 * The one state machine behind every HTTP front (Request/Response, node:http, Express,
 * Fastify, Hono, API Gateway). A guarded request goes:
 *
 *   method guarded? ──no──► next (untouched)
 *   key header ──absent & required──► 400   ──malformed──► 400
 *   body (bounded) ──over the limit──► 413
 *   scope, route, fingerprint ─► begin
 *      acquired ─► next ─► 2xx/3xx/4xx: store (or the too-large marker), send
 *                       └► 5xx, 408, 429, thrown: release, send / rethrow
 *      existing completed ─► replay (Idempotent-Replayed: true)
 *      existing in progress ─► 409 + Retry-After (or wait, when configured)
 *      fingerprint differs ─► 422          store down ─► 503 + Retry-After, next never runs
 */

/** Where a response came from. */
export type ResponseOrigin = 'handler' | 'replay' | 'problem';

/** A response and where it came from. */
export interface HandledResponse {
  /** The response as a standard `Response` (made on first access when `parts` are given). */
  readonly response: Response;
  /** The same response with its body in memory, when it is (replays, problems, captures). */
  readonly parts: ResponseParts | undefined;
  /**
   * `handler`: the handler ran for this request (guarded or not) and this is its response;
   * `replay`: a stored response; `problem`: an error answered by the middleware.
   */
  readonly origin: ResponseOrigin;
}

function handled(origin: ResponseOrigin, value: Response | ResponseParts): HandledResponse {
  if (isResponse(value)) return { origin, response: value, parts: undefined };
  let response: Response | undefined;
  return {
    origin,
    parts: value,
    get response() {
      response ??= toResponse(value);
      return response;
    },
  };
}

/** Per-request bounds a runtime knows (a Lambda's remaining time). */
export interface RequestHints {
  /**
   * Milliseconds this invocation has left. Caps the lease (a crashed run frees the key when
   * the platform would have killed it) and the wait for an in-progress twin.
   */
  remainingMs?: number;
}

/** A request as the core sees it, so that adapters need not build a `Request` first. */
export interface CoreInput<S> extends RequestHints {
  method: string;
  /** An absolute URL, or a path with its query. */
  url: string;
  /** The raw `Idempotency-Key` field: a string (repeats comma-joined) or each value. */
  keyHeader: string | readonly string[] | null | undefined;
  /** The request as the framework gave it (what `scope`, `route` and `required` receive). */
  source: S;
  /** Reads the whole body, bounded; called once, only for guarded requests with a key. */
  readBody(limit: number): Promise<Uint8Array | TooLarge>;
  /** Objects the idempotency context is linked to, for `idempotencyContext(x)`. */
  bind?: readonly object[];
}

/**
 * Runs the rest of the chain and gives its response: a `Response`, or {@link ResponseParts}
 * when the adapter holds the body in memory anyway. `ctx` and `body` are undefined for a
 * request that is not guarded (its body was not read); otherwise `body` is the buffered body.
 */
export type CoreNext = (
  ctx: IdempotencyContext | undefined,
  body: Uint8Array | undefined,
) => Promise<Response | ResponseParts>;

/** The framework-neutral middleware, for adapters. */
export interface IdempotencyCore<S> {
  readonly options: ResolvedHttpOptions<S>;
  /** Whether requests with this method are guarded. */
  guards(method: string): boolean;
  run(input: CoreInput<S>, next: CoreNext): Promise<HandledResponse>;
}

/**
 * Builds the core for an adapter. Validates `options` at once ({@link InvalidArgumentError});
 * `adapterOptions` names the options the adapter adds.
 */
export function createIdempotencyCore<S>(
  options: IdempotencyKeyOptions<S>,
  adapterOptions: readonly string[] = [],
): IdempotencyCore<S> {
  const http = resolveHttpOptions(options, adapterOptions);
  const policy = {
    shouldStore: http.shouldStore,
    maxStoredBodyBytes: http.maxStoredBodyBytes,
    replayHeaders: http.replayHeaders,
  };
  const execute: ExecuteOptions<StoredResponse> = {
    store: options.store,
    // A thrown handler error always releases the key: the client's retry runs again.
    rememberFailures: false,
    // Base64 grows a body by 4/3; headers and framing fit in the rest.
    maxResultBytes: Math.ceil(http.maxStoredBodyBytes / 3) * 4 + 64 * 1024,
    shouldStore: (value) => value.kind !== 'unstored',
  };
  if (options.ttl !== undefined) execute.ttl = options.ttl;
  if (options.lease !== undefined) execute.lease = options.lease;
  if (options.heartbeat !== undefined) execute.heartbeat = options.heartbeat;
  if (options.onInProgress !== undefined) execute.onInProgress = options.onInProgress;
  if (options.codec !== undefined) execute.codec = options.codec;
  if (options.clock !== undefined) execute.clock = options.clock;
  const resolved = resolveOptions(execute);

  /** The options bounded by the time a runtime says this request has left. */
  function optionsFor(hints: RequestHints): ResolvedOptions<StoredResponse> {
    const remaining = hints.remainingMs;
    if (remaining === undefined || !Number.isFinite(remaining)) return resolved;
    const leaseMs = Math.max(1, Math.min(resolved.leaseMs, Math.floor(remaining)));
    const bounded: ResolvedOptions<StoredResponse> = {
      ...resolved,
      leaseMs,
      // Heartbeats renew the lease up to the end of the invocation, never past it.
      leaseDeadline: elapsedOn(resolved.clock) + remaining,
      heartbeatMs:
        resolved.heartbeatMs === 0
          ? 0
          : Math.min(resolved.heartbeatMs, Math.max(1, Math.floor(leaseMs / 3))),
    };
    if (resolved.inProgress.kind === 'wait') {
      // Leave a tenth of the time (at most a second) to answer after the wait.
      const margin = Math.min(1000, remaining / 10);
      bounded.inProgress = {
        ...resolved.inProgress,
        waitMs: Math.max(0, Math.min(resolved.inProgress.waitMs, Math.floor(remaining - margin))),
      };
    }
    return bounded;
  }

  async function run(input: CoreInput<S>, next: CoreNext): Promise<HandledResponse> {
    const method = input.method.toUpperCase();
    if (!http.methods.has(method)) return handled('handler', await next(undefined, undefined));
    const parsed = parseIdempotencyKeyHeader(input.keyHeader);
    if (parsed.kind === 'invalid') return problem(new IdempotencyKeyInvalidError(parsed.reason));
    if (parsed.kind === 'absent') {
      if (!http.required(input.source)) {
        return handled('handler', await next(undefined, undefined));
      }
      return problem(
        new IdempotencyKeyMissingError(
          `${method} requests to this endpoint must carry an Idempotency-Key header`,
        ),
      );
    }
    let body: Uint8Array | TooLarge;
    try {
      body = await input.readBody(http.maxBodyBytes);
    } catch (error) {
      // A body parsed before the middleware (Express) is fingerprinted as it is read.
      if (error instanceof NestedTooDeepError) return problem(tooDeep(error));
      throw error;
    }
    if (body === TOO_LARGE) return problem(new RequestBodyTooLargeError(http.maxBodyBytes));

    // A path of the request line is appended, never resolved: resolving `//refunds/orders`
    // reads `refunds` as a host and gives the route `/orders`, another endpoint's operation.
    const url = input.url.startsWith('/')
      ? new URL(`http://localhost${input.url}`)
      : new URL(input.url, 'http://localhost');
    const route = http.route ? await http.route(input.source) : routeOf(input.url, url);
    const principal = http.scope ? await http.scope(input.source) : undefined;
    if (principal !== undefined && (typeof principal !== 'string' || principal === '')) {
      // Thrown before the handler: a request whose tenant cannot be told never runs. An
      // empty header read as the principal lands here; `|| undefined` makes it "no tenant".
      throw new InvalidArgumentError(
        `idempotency middleware: scope(req) must return a non-empty string or undefined; got ${JSON.stringify(principal)}`,
      );
    }
    const identity: OperationIdentity = {
      operation: `${http.namespace}:${method} ${route}`,
      key: parsed.key,
    };
    if (principal !== undefined) identity.principal = principal;
    if (http.fingerprint === undefined) {
      identity.fingerprintOf = { method, route, query: url.search, body: sha256(body) };
    } else if (http.fingerprint !== false) {
      // Awaited like scope and route: an async selector's promise would fingerprint as {}
      // and match every body.
      identity.fingerprintOf = await http.fingerprint({
        method,
        route,
        url,
        body,
        source: input.source,
      });
    }

    let sent: Response | ResponseParts | undefined;
    let handlerFailed = false;
    try {
      const outcome = await executeResolved<StoredResponse>(
        identity,
        async (ctx) => {
          if (input.bind) bindContext(ctx, ...input.bind);
          try {
            const captured = await captureResponse(await next(ctx, body), policy);
            sent = captured.sent;
            return captured.stored;
          } catch (error) {
            handlerFailed = true;
            throw error;
          }
        },
        optionsFor(input),
      );
      if (!outcome.replayed && sent !== undefined) return handled('handler', sent);
      return handled('replay', replayParts(outcome.value));
    } catch (error) {
      // The handler ran and answered; only the bookkeeping after it failed. Its response is
      // the truth for this client; a 503 would invite a retry and a second effect.
      if (sent !== undefined) {
        observe(http.onError, error);
        return handled('handler', sent);
      }
      // The handler's own error (the key was released): the framework's to answer, even
      // when it happens to be a reprocess error from the handler's own dependencies.
      if (handlerFailed) throw error;
      // The fingerprint selector's value comes from the request: a client nesting it too
      // deep is told so (400), as for a body over the size bound.
      if (error instanceof NestedTooDeepError) return problem(tooDeep(error));
      if (isReprocessError(error) && problemFor(error) !== undefined) return problem(error);
      throw error;
    }
  }

  function problem(error: unknown): HandledResponse {
    const details = problemFor(error);
    if (details === undefined) throw error;
    let headers: Record<string, string> | undefined;
    if (error instanceof IdempotencyInProgressError) {
      const seconds = retryAfterSeconds(Math.min(error.retryAfterMs, http.inProgressRetryAfterMs));
      headers = { 'retry-after': String(seconds) };
      details.retryAfter = seconds;
      // The error's own text names the lease's end; the client is told to ask sooner.
      details.detail = `the operation is already in progress; retry after ${seconds} s`;
    } else if (error instanceof StoreUnavailableError) {
      const seconds = retryAfterSeconds(http.storeRetryAfterMs);
      headers = { 'retry-after': String(seconds) };
      details.retryAfter = seconds;
    }
    if (isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)) {
      // The driver's words (a role name, an internal host) are for the operator, not for
      // whoever sent the request: onError gets them.
      details.detail = 'the idempotency store did not answer; retry later';
      observe(http.onError, error);
    } else if (isReprocessError(error, ErrorCode.RECORD_CORRUPT)) {
      details.detail = 'the stored record of this request cannot be read back';
      observe(http.onError, error);
    }
    return handled('problem', problemParts(details, headers));
  }

  return {
    options: http,
    guards: (method) => http.methods.has(method.toUpperCase()),
    run,
  };
}

function tooDeep(error: NestedTooDeepError): RequestNestedTooDeepError {
  return new RequestNestedTooDeepError(error.maxDepth);
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

/** Runs the rest of the chain with the (fresh) request. */
export type Next = (request: Request) => Promise<Response>;

/** The framework-neutral middleware over standard `Request`/`Response`. */
export type IdempotencyKeyHandler = (
  request: Request,
  next: Next,
  hints?: RequestHints,
) => Promise<Response>;

/**
 * The Idempotency-Key middleware over standard `Request`/`Response` (Deno, Bun, workers,
 * undici, and the base of every adapter). The body of a guarded request is read once, with a
 * bound, and `next` gets a fresh `Request` carrying it; `idempotencyContext(request)` gives the
 * handler its steps. See {@link IdempotencyKeyOptions} for the semantics.
 *
 * @example
 * const guard = idempotencyKey({ store, scope: (req) => req.headers.get('x-tenant') || undefined });
 * export default { fetch: (req: Request) => guard(req, handle) };
 */
export function idempotencyKey(options: IdempotencyKeyOptions<Request>): IdempotencyKeyHandler {
  const core = createIdempotencyCore(options);
  return async function idempotencyKeyHandler(request, next, hints) {
    const input: CoreInput<Request> = {
      method: request.method,
      url: request.url,
      keyHeader: request.headers.get('idempotency-key'),
      source: request,
      readBody: (limit) => readRequestBody(request, limit),
      bind: [request],
    };
    if (hints?.remainingMs !== undefined) input.remainingMs = hints.remainingMs;
    const handled = await core.run(input, (ctx, body) => {
      if (body === undefined) return next(request);
      const fresh = withBody(request, body);
      if (ctx) bindContext(ctx, fresh);
      return next(fresh);
    });
    return handled.response;
  };
}

/** Reads a `Request` body with a bound, refusing at once a declared length over it. */
export function readRequestBody(request: Request, limit: number): Promise<Uint8Array | TooLarge> {
  const declared = Number(request.headers.get('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(TOO_LARGE);
  return readBounded(request.body, limit);
}

/** A copy of `request` whose body is `body` (already read from the original). */
export function withBody(request: Request, body: Uint8Array): Request {
  const init: RequestInit = {
    method: request.method,
    headers: request.headers,
    signal: request.signal,
  };
  if (body.byteLength > 0) init.body = bodyInit(body);
  return new Request(request.url, init);
}

/**
 * The default route of a request: the path as the framework routed it, taken from the request
 * target as text, up to `?` or `#`. node:http, Express and Fastify route on that text, in
 * origin form (`/orders/%2e%2e/cancel`) or absolute form (`http://host/orders/%2e%2e/cancel`),
 * while URL parsing would resolve its dot segments into another endpoint's path (`/cancel`)
 * and replay one endpoint's response on the other. A fetch-style Request (Hono's, Lambda's)
 * was parsed before anything routed it, so its text is already what the router saw. Any
 * other target (`*`) is the parsed pathname.
 */
function routeOf(target: string, parsed: URL): string {
  let path = target;
  if (!target.startsWith('/')) {
    const origin = SCHEME_AND_AUTHORITY.exec(target);
    if (origin === null) return parsed.pathname;
    path = target.slice(origin[0].length);
  }
  const end = path.search(/[?#]/);
  const route = end === -1 ? path : path.slice(0, end);
  return route === '' ? '/' : route;
}

/** `scheme://authority` at the start of an absolute-form request target. */
const SCHEME_AND_AUTHORITY = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;
