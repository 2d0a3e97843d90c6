import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../../errors.js';
import { canonicalJson } from '../../idempotency/canonical-json.js';
import { bodyInit, toBuffer } from '../../http/body.js';
import { type ResponseParts, isNullBodyStatus, isResponse } from '../../http/stored-response.js';

/*
 * API Gateway events and results, as structural types (the fields read here, so that neither
 * `aws-lambda` nor its types are needed), and their conversion to and from standard
 * `Request`/`Response`, so the one HTTP core serves Lambda too.
 *
 * REST APIs (and HTTP APIs with payload format 1.0) send version 1 events: `httpMethod`,
 * `path`, `headers` + `multiValueHeaders`, query parameters as maps. HTTP APIs with payload
 * format 2.0 send version 2 events: `requestContext.http.method`, `rawPath`, `rawQueryString`,
 * comma-joined `headers` and a separate `cookies` list. Both carry a text body, base64 when
 * `isBase64Encoded`.
 */

/** An API Gateway REST API (payload format 1.0) proxy event: the fields reprocess reads. */
export interface ApiGatewayV1EventLike {
  httpMethod: string;
  path: string;
  headers?: Record<string, string | undefined> | null | undefined;
  multiValueHeaders?: Record<string, string[] | undefined> | null | undefined;
  queryStringParameters?: Record<string, string | undefined> | null | undefined;
  multiValueQueryStringParameters?: Record<string, string[] | undefined> | null | undefined;
  body?: string | null | undefined;
  isBase64Encoded?: boolean | undefined;
  requestContext?: { domainName?: string | undefined } | null | undefined;
}

/** An API Gateway HTTP API (payload format 2.0) event: the fields reprocess reads. */
export interface ApiGatewayV2EventLike {
  version: string;
  rawPath: string;
  rawQueryString?: string | undefined;
  cookies?: string[] | undefined;
  headers?: Record<string, string | undefined> | undefined;
  body?: string | undefined;
  isBase64Encoded?: boolean | undefined;
  requestContext: { domainName?: string | undefined; http: { method: string } };
}

/** Either kind of API Gateway event. */
export type ApiGatewayEventLike = ApiGatewayV1EventLike | ApiGatewayV2EventLike;

/** A REST API (v1) proxy result. */
export interface ApiGatewayV1Result {
  statusCode: number;
  headers?: Record<string, boolean | number | string> | undefined;
  multiValueHeaders?: Record<string, Array<boolean | number | string>> | undefined;
  body: string;
  isBase64Encoded?: boolean | undefined;
}

/** An HTTP API (v2) structured result. */
export interface ApiGatewayV2Result {
  statusCode?: number | undefined;
  headers?: Record<string, boolean | number | string> | undefined;
  cookies?: string[] | undefined;
  body?: string | undefined;
  isBase64Encoded?: boolean | undefined;
}

/** What a Lambda handler gets as its second argument: the part reprocess uses. */
export interface LambdaContextLike {
  /** Milliseconds left before the platform ends this invocation. */
  getRemainingTimeInMillis?(): number;
}

/** Whether `event` is an HTTP API payload format 2.0 event. */
export function isV2Event(event: ApiGatewayEventLike): event is ApiGatewayV2EventLike {
  return (
    (event as ApiGatewayV2EventLike).version === '2.0' &&
    typeof (event as ApiGatewayV2EventLike).requestContext?.http?.method === 'string'
  );
}

/** Whether `event` is a REST API (payload format 1.0) proxy event. */
export function isV1Event(event: ApiGatewayEventLike): event is ApiGatewayV1EventLike {
  return typeof (event as ApiGatewayV1EventLike).httpMethod === 'string';
}

/** The method of either kind of event; throws {@link InvalidArgumentError} for anything else. */
export function eventMethod(event: ApiGatewayEventLike): string {
  if (isV2Event(event)) return event.requestContext.http.method;
  if (isV1Event(event)) return event.httpMethod;
  throw notAnEvent(event);
}

/** The absolute URL of the request an event describes. */
export function eventUrl(event: ApiGatewayEventLike): string {
  const headers = event.headers ?? {};
  const host =
    event.requestContext?.domainName ?? headerValue(headers, 'host') ?? 'lambda.localhost';
  if (isV2Event(event)) {
    const query = event.rawQueryString ? `?${event.rawQueryString}` : '';
    return `https://${host}${encodedPath(event.rawPath)}${query}`;
  }
  if (!isV1Event(event)) throw notAnEvent(event);
  const params = new URLSearchParams();
  const multi = event.multiValueQueryStringParameters;
  if (multi) {
    for (const [name, values] of Object.entries(multi)) {
      for (const value of values ?? []) params.append(name, value);
    }
  } else if (event.queryStringParameters) {
    for (const [name, value] of Object.entries(event.queryStringParameters)) {
      if (value !== undefined) params.append(name, value);
    }
  }
  const query = params.size > 0 ? `?${params}` : '';
  return `https://${host}${encodedPath(event.path)}${query}`;
}

/**
 * A path as it goes in a URL. An HTTP API hands Lambda the path decoded (`/orders/a#one` for
 * `/orders/a%23one`), and pasted into a URL as it is, `#` would end it (the rest, query
 * included, read as a fragment), `?` would start the query, and `\` would read as `/`: another
 * route, and another request's stored response. Every character a path cannot hold as it is
 * is escaped again, and a `%` that starts no escape becomes `%25`; a path that came encoded
 * (a REST API's, a Function URL's) is left byte for byte as it was.
 */
function encodedPath(path: string): string {
  return path.replace(/%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/gu, (char) => {
    try {
      return encodeURIComponent(char);
    } catch {
      // A lone surrogate: the replacement character, as a UTF-8 escape.
      return '%EF%BF%BD';
    }
  });
}

/** The raw `Idempotency-Key` field of an event: each value when the event keeps them apart. */
export function eventKeyHeader(event: ApiGatewayEventLike): string | string[] | undefined {
  if (isV1Event(event) && event.multiValueHeaders) {
    const values = headerValues(event.multiValueHeaders, 'idempotency-key');
    if (values !== undefined) return values;
  }
  return headerValue(event.headers ?? {}, 'idempotency-key');
}

/**
 * The body of an event as bytes (base64 decoded when the event says so). A body a middleware
 * before this one already parsed (`@middy/http-json-body-parser` puts an object there) is its
 * canonical JSON, as Express's parsed `req.body` is: the same data with its keys in another
 * order is the same request. One nested too deep throws NestedTooDeepError (a 400).
 */
export function eventBody(event: ApiGatewayEventLike): Uint8Array {
  const body: unknown = event.body;
  if (body === undefined || body === null || body === '') return new Uint8Array(0);
  if (typeof body !== 'string') {
    return body instanceof Uint8Array ? body : Buffer.from(canonicalJson(body), 'utf8');
  }
  return Buffer.from(body, event.isBase64Encoded ? 'base64' : 'utf8');
}

/** The headers of an event, multi-value headers and v2 cookies included. */
export function eventHeaders(event: ApiGatewayEventLike): Headers {
  const headers = new Headers();
  if (isV1Event(event) && event.multiValueHeaders) {
    for (const [name, values] of Object.entries(event.multiValueHeaders)) {
      for (const value of values ?? []) headers.append(name, value);
    }
  } else {
    for (const [name, value] of Object.entries(event.headers ?? {})) {
      if (value !== undefined) headers.append(name, value);
    }
  }
  if (isV2Event(event) && event.cookies && event.cookies.length > 0) {
    headers.set('cookie', event.cookies.join('; '));
  }
  return headers;
}

/** A standard `Request` for an API Gateway event (v1 or v2). */
export function eventToRequest(event: ApiGatewayEventLike): Request {
  const method = eventMethod(event);
  const init: RequestInit = { method, headers: eventHeaders(event) };
  const body = eventBody(event);
  if (body.byteLength > 0 && method !== 'GET' && method !== 'HEAD') init.body = bodyInit(body);
  return new Request(eventUrl(event), init);
}

/** A `Response` for what a v1 handler returned. */
export function v1ResultToResponse(result: ApiGatewayV1Result): Response {
  if (typeof result !== 'object' || result === null || typeof result.statusCode !== 'number') {
    throw new InvalidArgumentError(
      'the handler must return an API Gateway proxy result { statusCode, headers?, body }',
    );
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    setResultHeader(headers, name, String(value));
  }
  for (const [name, values] of Object.entries(result.multiValueHeaders ?? {})) {
    if (!Array.isArray(values)) continue;
    removeResultHeader(headers, name);
    for (const value of values) appendResultHeader(headers, name, String(value));
  }
  return new Response(bodyOf(result.statusCode, result.body, result.isBase64Encoded), {
    status: result.statusCode,
    headers,
  });
}

/**
 * A `Response` for what a v2 handler returned. A structured result (with `statusCode`) is
 * taken as it is; anything else is what API Gateway infers: status 200, the string as the
 * body, any other value as JSON.
 */
export function v2ResultToResponse(result: ApiGatewayV2Result | string | unknown): Response {
  if (typeof result === 'string') {
    return new Response(result, { status: 200, headers: { 'content-type': 'application/json' } });
  }
  const structured = result as ApiGatewayV2Result | null | undefined;
  if (
    typeof structured !== 'object' ||
    structured === null ||
    structured.statusCode === undefined
  ) {
    return new Response(JSON.stringify(result ?? null), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    });
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(structured.headers ?? {})) {
    setResultHeader(headers, name, String(value));
  }
  for (const cookie of structured.cookies ?? []) {
    appendResultHeader(headers, 'set-cookie', String(cookie));
  }
  return new Response(bodyOf(structured.statusCode, structured.body, structured.isBase64Encoded), {
    status: structured.statusCode,
    headers,
  });
}

/** A v1 proxy result for a `Response` (replays and problems). */
export async function responseToV1Result(
  response: Response | ResponseParts,
): Promise<ApiGatewayV1Result> {
  const headers: Record<string, string> = {};
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') headers[name] = fromByteString(value);
  }
  const result: ApiGatewayV1Result = { statusCode: response.status, headers, body: '' };
  const cookies = response.headers.getSetCookie().map(fromByteString);
  if (cookies.length > 0) result.multiValueHeaders = { 'set-cookie': cookies };
  Object.assign(result, await encodeBody(response));
  return result;
}

/** A v2 structured result for a `Response` (replays and problems). */
export async function responseToV2Result(
  response: Response | ResponseParts,
): Promise<ApiGatewayV2Result> {
  const headers: Record<string, string> = {};
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') headers[name] = fromByteString(value);
  }
  const result: ApiGatewayV2Result = { statusCode: response.status, headers };
  const cookies = response.headers.getSetCookie().map(fromByteString);
  if (cookies.length > 0) result.cookies = cookies;
  Object.assign(result, await encodeBody(response));
  return result;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/*
 * A handler's header goes into a `Headers` (to be stored and replayed) as the bytes API Gateway
 * sends for it: a value past ASCII goes in as its UTF-8 bytes, one character each (a
 * ByteString, as fetch itself gives such a header; `Headers` refuses characters past U+00FF),
 * and comes back out of a replay as the same UTF-8 text ({@link fromByteString}). A name or value no
 * HTTP field can carry (CR, LF, NUL, a space in the name) is left out of the stored copy: the
 * handler's effect has happened by then, and failing here would free the key for a retry to
 * run it again. The first answer is the handler's own result, untouched either way.
 */
function setResultHeader(headers: Headers, name: string, value: string): void {
  removeResultHeader(headers, name);
  appendResultHeader(headers, name, value);
}

function removeResultHeader(headers: Headers, name: string): void {
  try {
    headers.delete(name);
  } catch {
    // Not a header name: nothing of it was added either.
  }
}

function appendResultHeader(headers: Headers, name: string, value: string): void {
  try {
    // Any text past ASCII goes in as its UTF-8 bytes, so that fromByteString is its exact
    // inverse (Latin-1 text such as "Ã©" must not come back as "é").
    headers.append(name, isAscii(value) ? value : Buffer.from(value, 'utf8').toString('latin1'));
  } catch {
    // CR, LF or NUL in the value, or a bad name: not an HTTP field.
  }
}

function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** A header value of a stored response as text: its bytes read as UTF-8 when they are that. */
function fromByteString(value: string): string {
  if (isAscii(value)) return value;
  try {
    return UTF8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value; // Latin-1 text, as the handler gave it
  }
}

/**
 * The body as API Gateway takes it: text when the bytes are UTF-8 and not content-encoded,
 * else base64 (`isBase64Encoded`). Decided from the bytes, not the content type: gzip'd JSON
 * or any non-UTF-8 bytes under a text type must come back byte for byte, and text under a
 * type no list knows stays text.
 */
async function encodeBody(
  response: Response | ResponseParts,
): Promise<{ body: string; isBase64Encoded: boolean }> {
  const bytes = isResponse(response)
    ? Buffer.from(await response.arrayBuffer())
    : response.body === null
      ? Buffer.alloc(0)
      : toBuffer(response.body);
  if (bytes.byteLength === 0) return { body: '', isBase64Encoded: false };
  if (!response.headers.has('content-encoding')) {
    try {
      return { body: UTF8.decode(bytes), isBase64Encoded: false };
    } catch {
      // Not UTF-8: base64 below.
    }
  }
  return { body: bytes.toString('base64'), isBase64Encoded: true };
}

function bodyOf(
  status: number,
  body: string | undefined,
  base64: boolean | undefined,
): BodyInit | null {
  if (isNullBodyStatus(status) || body === undefined || body === '') return null;
  // Bytes either way: a string body would make Response add a content-type of its own
  // (text/plain), which the stored response, and so every replay, would then carry.
  return bodyInit(Buffer.from(body, base64 ? 'base64' : 'utf8'));
}

function headerValue(
  headers: Record<string, string | undefined>,
  name: string,
): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return value;
  }
  return undefined;
}

function headerValues(
  headers: Record<string, string[] | undefined>,
  name: string,
): string[] | undefined {
  let found: string[] | undefined;
  for (const [key, values] of Object.entries(headers)) {
    if (key.toLowerCase() === name && values !== undefined) found = [...(found ?? []), ...values];
  }
  return found;
}

function notAnEvent(event: unknown): InvalidArgumentError {
  const keys =
    typeof event === 'object' && event !== null ? Object.keys(event).join(', ') : typeof event;
  return new InvalidArgumentError(
    `not an API Gateway proxy event (neither a REST API v1 event with httpMethod nor an HTTP API v2 event); got ${keys}`,
  );
}
