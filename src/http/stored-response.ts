import { Buffer } from 'node:buffer';
import { RecordCorruptError } from '../errors.js';
import { bodyInit, readPrefix } from './body.js';
import { ResponseNotReplayableError } from './errors.js';

/**
 * What the HTTP front keeps in the idempotency record: the response to replay, or a marker.
 * It goes through the store's codec, so it is plain JSON: the body is base64.
 */
export type StoredResponse =
  | {
      kind: 'response';
      status: number;
      /** Allow-listed headers only, lower-case names, in order. */
      headers: [string, string][];
      /** The body, base64. */
      body: string;
    }
  | {
      /** The response was sent but its body was over the bound: a repeat gets a problem. */
      kind: 'too_large';
      status: number;
      limit: number;
      /** Not over the bound but never seen: written straight to the connection. */
      unseen?: boolean;
    }
  | {
      /** Not stored (a 5xx by default): the key is released so a retry runs again. */
      kind: 'unstored';
      status: number;
    };

/** The header that marks a replayed response (Stripe's name). */
export const REPLAYED_HEADER = 'Idempotent-Replayed';

/**
 * Response headers replayed by default. Anything about the representation and where it lives;
 * never `set-cookie` (a session cookie replayed to a retrying client is a leak), never hop-by-hop
 * or length headers (recomputed when the replay is sent).
 */
export const DEFAULT_REPLAY_HEADERS: readonly string[] = Object.freeze([
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-location',
  'content-type',
  'etag',
  'expires',
  'last-modified',
  'link',
  'location',
]);

const NULL_BODY_STATUS: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

/** Whether a response with this status must have no body. */
export function isNullBodyStatus(status: number): boolean {
  return NULL_BODY_STATUS.has(status);
}

/** What `shouldStore` sees of a response. A `Response` is one. */
export interface ResponseLike {
  readonly status: number;
  readonly headers: Headers;
}

/**
 * A response whose body is already in memory: what the Node-based adapters capture, and what
 * replays and problems are made of. Cheaper than a `Response` (no stream), and turned into
 * one only where a `Response` is needed ({@link toResponse}).
 */
export interface ResponseParts extends ResponseLike {
  readonly statusText?: string;
  readonly body: Uint8Array | null;
  /**
   * The body went to the client without passing through the adapter (a Fastify reply the
   * handler hijacked): it is unknown, so the response is stored as not replayable.
   */
  readonly bodyUnseen?: boolean;
}

/** Whether `value` is a standard `Response` (not {@link ResponseParts}). */
export function isResponse(value: Response | ResponseParts): value is Response {
  return value instanceof Response;
}

/** A standard `Response` for `parts`. */
export function toResponse(parts: ResponseParts): Response {
  const body = parts.body === null || isNullBodyStatus(parts.status) ? null : bodyInit(parts.body);
  const init: ResponseInit = { status: parts.status, headers: parts.headers };
  if (parts.statusText !== undefined) init.statusText = parts.statusText;
  return new Response(body, init);
}

/** How a fresh response becomes a stored one. */
export interface CapturePolicy {
  /** Whether this response is stored at all (false: release the key). */
  shouldStore: (response: ResponseLike) => boolean;
  /** Bound on the stored body, bytes. */
  maxStoredBodyBytes: number;
  /** Lower-case names of the headers to keep. */
  replayHeaders: ReadonlySet<string>;
}

/** A captured response: what to store, and the response to send now. */
export interface Captured {
  stored: StoredResponse;
  /**
   * What the client gets (the handler's status, headers and body): the parts given, or for a
   * `Response` a copy whose body is what was read of the original, then the rest of it.
   */
  sent: Response | ResponseParts;
}

/**
 * Turns a handler's response into what is stored and what is sent. A `Response` body is read
 * up to the bound only; a larger one is streamed on to the client and stored as a
 * `too_large` marker.
 */
export async function captureResponse(
  response: Response | ResponseParts,
  policy: CapturePolicy,
): Promise<Captured> {
  const status = response.status;
  if (!policy.shouldStore(response)) {
    return { stored: { kind: 'unstored', status }, sent: response };
  }
  const tooLarge: StoredResponse = { kind: 'too_large', status, limit: policy.maxStoredBodyBytes };
  if (!isResponse(response) && response.bodyUnseen === true) {
    return { stored: { ...tooLarge, unseen: true }, sent: response };
  }
  let bytes: Uint8Array;
  let sent: Response | ResponseParts = response;
  if (isResponse(response)) {
    const prefix = await readPrefix(response.body, policy.maxStoredBodyBytes);
    const init = { status, statusText: response.statusText, headers: response.headers };
    if (!prefix.complete) return { stored: tooLarge, sent: new Response(prefix.stream, init) };
    bytes = prefix.bytes;
    // Read whole, it now goes out with a known length: the framing headers of a stream
    // (Hono's streamText sets transfer-encoding: chunked) would contradict it.
    const headers = new Headers(response.headers);
    for (const name of FRAMING_HEADERS) headers.delete(name);
    sent = new Response(isNullBodyStatus(status) ? null : bodyInit(bytes), { ...init, headers });
  } else {
    bytes = response.body ?? EMPTY;
    if (bytes.byteLength > policy.maxStoredBodyBytes) return { stored: tooLarge, sent };
  }
  const headers: [string, string][] = [];
  let headerBytes = 0;
  for (const [name, value] of response.headers) {
    if (!policy.replayHeaders.has(name)) continue;
    headers.push([name, value]);
    // As stored: in JSON, where a quote or a backslash takes two bytes and a control six.
    headerBytes += Buffer.byteLength(JSON.stringify([name, value]));
  }
  // The stored result has room for the base64 body and this much of headers: more (a huge
  // allow-listed header) would be refused by the store's bound, as a failure without the
  // status. Marked too large instead, its repeats get the 410 that carries the status.
  if (headerBytes > MAX_STORED_HEADER_BYTES) return { stored: tooLarge, sent };
  return {
    stored: { kind: 'response', status, headers, body: Buffer.from(bytes).toString('base64') },
    sent,
  };
}

const EMPTY = new Uint8Array(0);

/**
 * Most bytes of allow-listed headers kept with a stored response. The core's bound on a stored
 * result leaves 64 KiB beside the base64 body; this leaves room in it for the rest.
 */
export const MAX_STORED_HEADER_BYTES = 48 * 1024;

/** Headers that describe how a body is framed on one connection, not the body itself. */
const FRAMING_HEADERS = ['transfer-encoding', 'content-length', 'connection', 'keep-alive'];

/**
 * The replay of a stored response, with `Idempotent-Replayed: true`. A `too_large` marker
 * throws {@link ResponseNotReplayableError}; anything that is not a stored response throws
 * {@link RecordCorruptError}.
 */
export function replayParts(value: unknown): ResponseParts {
  const stored = asStoredResponse(value);
  if (stored.kind === 'too_large') {
    throw new ResponseNotReplayableError(stored.status, stored.limit, stored.unseen === true);
  }
  if (stored.kind === 'unstored') {
    throw new RecordCorruptError('the idempotency record holds a response that was never stored');
  }
  const headers = new Headers();
  for (const [name, value] of stored.headers) headers.append(name, value);
  headers.set(REPLAYED_HEADER, 'true');
  const body = isNullBodyStatus(stored.status) ? null : Buffer.from(stored.body, 'base64');
  return { status: stored.status, headers, body };
}

/** Checks the shape of a decoded record value; throws {@link RecordCorruptError}. */
export function asStoredResponse(value: unknown): StoredResponse {
  const v = value as Partial<Record<string, unknown>> | null;
  if (typeof v !== 'object' || v === null || !isStatus(v.status)) throw corrupt();
  if (v.kind === 'response') {
    if (typeof v.body !== 'string' || !Array.isArray(v.headers)) throw corrupt();
    for (const pair of v.headers) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw corrupt();
      }
    }
    return v as StoredResponse;
  }
  if (v.kind === 'too_large') {
    if (typeof v.limit !== 'number') throw corrupt();
    if (v.unseen !== undefined && typeof v.unseen !== 'boolean') throw corrupt();
    return v as StoredResponse;
  }
  if (v.kind === 'unstored') return v as StoredResponse;
  throw corrupt();
}

function isStatus(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 200 && value <= 599;
}

function corrupt(): RecordCorruptError {
  return new RecordCorruptError(
    'the idempotency record does not hold a stored HTTP response (was the key used by another front?)',
  );
}
