import { type Duration, toMs } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { checkOptionNames, optionNames } from '../option-names.js';
import type { IdempotencyBaseOptions } from '../idempotency/types.js';
import { DEFAULT_REPLAY_HEADERS, type ResponseLike } from './stored-response.js';

/** What the fingerprint function sees. */
export interface FingerprintInput<S> {
  /** Upper-case method. */
  method: string;
  /** The route, as `route(req)` gave it. */
  route: string;
  url: URL;
  /** The raw request body (empty when there is none). */
  body: Uint8Array;
  /** The request as your framework gave it. */
  source: S;
}

/**
 * Options of the Idempotency-Key middleware. `S` is what your framework calls a request:
 * `Request` for the core, `IncomingMessage` for node:http and Express, Fastify's request, Hono's
 * context, or the Lambda event; `scope`, `route` and `required` receive it.
 */
export interface IdempotencyKeyOptions<S = Request>
  extends Pick<
    IdempotencyBaseOptions,
    'store' | 'ttl' | 'lease' | 'heartbeat' | 'onInProgress' | 'codec' | 'clock'
  > {
  /** Methods that are guarded and must carry a key (default POST and PATCH). Others pass through. */
  methods?: readonly string[];
  /**
   * Whether a guarded request without a key is refused with 400 (default true). When false,
   * such a request runs unguarded: nothing is stored or replayed for it.
   */
  required?: boolean | ((source: S) => boolean);
  /**
   * The principal or tenant the key belongs to: the same key from two principals is two
   * operations, and one principal's response is never replayed to another. `undefined` means
   * one shared key space (fine only when keys are unguessable and clients trusted).
   */
  scope?: (source: S) => string | undefined | Promise<string | undefined>;
  /** The route part of the operation (default: the URL's pathname). */
  route?: (source: S) => string | Promise<string>;
  /**
   * What must match on a repeat, beyond the key (default: method, route, query string and a
   * SHA-256 of the raw body). Return any JSON-able value, or a promise of one; `false` turns
   * the check off.
   */
  fingerprint?: false | ((input: FingerprintInput<S>) => unknown | Promise<unknown>);
  /** Largest request body buffered for the fingerprint (default 1 MiB); larger gets 413. */
  maxBodyBytes?: number;
  /**
   * Largest response body stored for replay (default 1 MiB). A larger response is sent but
   * not stored; the key is completed with a marker, and a repeat gets a 410 problem.
   */
  maxStoredBodyBytes?: number;
  /** Response headers stored and replayed (default {@link DEFAULT_REPLAY_HEADERS}). */
  replayHeaders?: readonly string[];
  /**
   * Which responses are stored and replayed. The default stores every status below 500
   * except 408 and 429 (which ask the client to try again), and releases the key for the
   * rest, so a retry runs again (completed steps are not repeated). A thrown error always
   * releases the key.
   */
  shouldStore?: (response: ResponseLike) => boolean;
  /** Retry-After sent with a 503 when the store does not answer (default 1s). */
  storeRetryAfter?: Duration;
  /**
   * Longest Retry-After sent with a 409 (default 1s). The hint is the time left on the
   * first request's lease, capped by this: a lease bounds recovery from a crash, while a
   * request that is merely running usually finishes much sooner, and its caller is waiting.
   */
  inProgressRetryAfter?: Duration;
  /** Prefix of the operation name, to share a store between services (default `http`). */
  namespace?: string;
  /**
   * Told about a store failure that happened after the handler ran (its response is still
   * sent, unchanged): the record may stay in progress until its lease ends. Also told the
   * full error behind a 503 (store unavailable) or a 500 (record corrupt) problem, whose
   * `detail` says only what happened, not the driver's words.
   */
  onError?: (error: unknown) => void;
}

/** The options turned into what the core uses on every request. */
export interface ResolvedHttpOptions<S> {
  methods: ReadonlySet<string>;
  required: (source: S) => boolean;
  scope: ((source: S) => string | undefined | Promise<string | undefined>) | undefined;
  route: ((source: S) => string | Promise<string>) | undefined;
  fingerprint: false | ((input: FingerprintInput<S>) => unknown) | undefined;
  maxBodyBytes: number;
  maxStoredBodyBytes: number;
  replayHeaders: ReadonlySet<string>;
  shouldStore: (response: ResponseLike) => boolean;
  storeRetryAfterMs: number;
  inProgressRetryAfterMs: number;
  namespace: string;
  onError: ((error: unknown) => void) | undefined;
}

/** Headers that carry credentials: never stored, never replayed. */
const NEVER_REPLAYED: ReadonlySet<string> = new Set([
  'set-cookie',
  'set-cookie2',
  'authorization',
  'proxy-authorization',
]);

/** One mebibyte, the default bound on request and stored response bodies. */
export const MIB = 1024 * 1024;

/** The default storage rule: below 500, except 408 and 429. */
export function defaultShouldStore(response: ResponseLike): boolean {
  const status = response.status;
  return status < 500 && status !== 408 && status !== 429;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const HTTP_OPTIONS = optionNames<IdempotencyKeyOptions<unknown>>({
  store: true,
  ttl: true,
  lease: true,
  heartbeat: true,
  onInProgress: true,
  codec: true,
  clock: true,
  methods: true,
  required: true,
  scope: true,
  route: true,
  fingerprint: true,
  maxBodyBytes: true,
  maxStoredBodyBytes: true,
  replayHeaders: true,
  shouldStore: true,
  storeRetryAfter: true,
  inProgressRetryAfter: true,
  namespace: true,
  onError: true,
});

/**
 * Validates the HTTP options (each problem an {@link InvalidArgumentError} naming it).
 * `adapterOptions`: the names an adapter adds to them (node's `onListenerError`).
 */
export function resolveHttpOptions<S>(
  options: IdempotencyKeyOptions<S>,
  adapterOptions: readonly string[] = [],
): ResolvedHttpOptions<S> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(
      'idempotencyKey: options must be an object with at least a store',
    );
  }
  checkOptionNames(
    'idempotencyKey',
    options,
    adapterOptions.length === 0 ? HTTP_OPTIONS : new Set([...HTTP_OPTIONS, ...adapterOptions]),
  );
  if (typeof options.store !== 'object' || options.store === null) {
    throw new InvalidArgumentError(
      'idempotencyKey: option "store" is required (an IdempotencyStore)',
    );
  }
  const methods = options.methods ?? ['POST', 'PATCH'];
  if (!Array.isArray(methods) || methods.some((m) => typeof m !== 'string' || !TOKEN.test(m))) {
    throw new InvalidArgumentError(
      `idempotencyKey: "methods" must be an array of HTTP method names, got ${JSON.stringify(methods)}`,
    );
  }
  const required = options.required ?? true;
  if (typeof required !== 'boolean' && typeof required !== 'function') {
    throw new InvalidArgumentError('idempotencyKey: "required" must be a boolean or a function');
  }
  for (const name of ['scope', 'route', 'shouldStore', 'onError'] as const) {
    const value = options[name];
    if (value !== undefined && typeof value !== 'function') {
      throw new InvalidArgumentError(`idempotencyKey: "${name}" must be a function`);
    }
  }
  const fingerprint = options.fingerprint;
  if (fingerprint !== undefined && fingerprint !== false && typeof fingerprint !== 'function') {
    throw new InvalidArgumentError('idempotencyKey: "fingerprint" must be false or a function');
  }
  const replayHeaders = options.replayHeaders ?? DEFAULT_REPLAY_HEADERS;
  if (
    !Array.isArray(replayHeaders) ||
    replayHeaders.some((h) => typeof h !== 'string' || !TOKEN.test(h))
  ) {
    throw new InvalidArgumentError(
      `idempotencyKey: "replayHeaders" must be an array of header names, got ${JSON.stringify(replayHeaders)}`,
    );
  }
  const secret = replayHeaders.find((h) => NEVER_REPLAYED.has(h.toLowerCase()));
  if (secret !== undefined) {
    throw new InvalidArgumentError(
      `idempotencyKey: "replayHeaders" must not name ${JSON.stringify(secret)}: a credential stored at rest and replayed to whoever repeats the key is a leak`,
    );
  }
  const namespace = options.namespace ?? 'http';
  if (typeof namespace !== 'string' || namespace.length === 0) {
    throw new InvalidArgumentError('idempotencyKey: "namespace" must be a non-empty string');
  }
  return {
    methods: new Set(methods.map((m) => m.toUpperCase())),
    required: typeof required === 'boolean' ? () => required : required,
    scope: options.scope,
    route: options.route,
    fingerprint,
    maxBodyBytes: byteCount(options.maxBodyBytes, 'maxBodyBytes'),
    maxStoredBodyBytes: byteCount(options.maxStoredBodyBytes, 'maxStoredBodyBytes'),
    replayHeaders: new Set(replayHeaders.map((h) => h.toLowerCase())),
    shouldStore: options.shouldStore ?? defaultShouldStore,
    storeRetryAfterMs: toMs(options.storeRetryAfter ?? 1000, 'idempotencyKey: "storeRetryAfter"'),
    inProgressRetryAfterMs: toMs(
      options.inProgressRetryAfter ?? 1000,
      'idempotencyKey: "inProgressRetryAfter"',
    ),
    namespace,
    onError: options.onError,
  };
}

function byteCount(value: number | undefined, name: string): number {
  if (value === undefined) return MIB;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `idempotencyKey: "${name}" must be a whole number of bytes >= 0, got ${String(value)}`,
    );
  }
  return value;
}
