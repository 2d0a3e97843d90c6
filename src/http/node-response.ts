import { Buffer } from 'node:buffer';
import type { OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { HandledResponse } from './idempotency-key.js';
import { type ResponseParts, isNullBodyStatus } from './stored-response.js';

/**
 * Holding back what a Node handler writes, so the middleware can store it before the client
 * sees it (and send something else on a replay). The same technique as compression and cache
 * middleware: `writeHead`, `write`, `end` and `flushHeaders` are shadowed on the instance;
 * headers still go through the real `setHeader`, so `getHeader` and friends keep working.
 * The whole body is buffered: guarded endpoints (POST, PATCH) answer with documents, not
 * streams.
 */
export interface NodeResponseCapture {
  /** Settles with the handler's response when it calls `end`. */
  readonly done: Promise<ResponseParts>;
  /** Whether the handler called `end`. */
  readonly ended: boolean;
  /** Stops capturing and sends what the handler wrote, as it wrote it. */
  flush(): void;
  /** Stops capturing (to send something else). */
  release(): void;
}

type WriteCallback = (error?: Error | null) => void;

const SHADOWED = ['writeHead', 'write', 'end', 'flushHeaders'] as const;

/** Starts capturing `res`. */
export function captureNodeResponse(res: ServerResponse): NodeResponseCapture {
  const chunks: Buffer[] = [];
  let total = 0;
  let resolveDone!: (response: ResponseParts) => void;
  let rejectDone!: (error: unknown) => void;
  const done = new Promise<ResponseParts>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  let ended = false;

  const push = (chunk: unknown, encoding: unknown): void => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const buffer =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.from(chunk as Uint8Array);
    chunks.push(buffer);
    total += buffer.byteLength;
  };
  const callbackOf = (...args: unknown[]): WriteCallback | undefined =>
    args.find((a): a is WriteCallback => typeof a === 'function');

  const shadow = res as unknown as Record<string, unknown>;
  // Middleware that ran before (compression, on-headers) may have patched these on the
  // instance already: keep their versions to put back, rather than deleting them.
  const previous = SHADOWED.map(
    (name) => [name, Object.getOwnPropertyDescriptor(res, name)] as const,
  );
  shadow.writeHead = (
    status: number,
    reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
    maybeHeaders?: OutgoingHttpHeaders | OutgoingHttpHeader[],
  ): ServerResponse => {
    res.statusCode = status;
    let headers = maybeHeaders;
    if (typeof reasonOrHeaders === 'string') res.statusMessage = reasonOrHeaders;
    else headers = reasonOrHeaders;
    if (headers !== undefined) applyHeaders(res, headers);
    return res;
  };
  shadow.write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    push(chunk, encoding);
    const cb = callbackOf(encoding, callback);
    if (cb) process.nextTick(cb);
    return true;
  };
  // What the handler answered, as it stood at its `end`: sent as such by flush().
  let answered:
    | { status: number; message: string; headers: OutgoingHttpHeaders; names: string[] }
    | undefined;
  shadow.end = (chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse => {
    if (ended) return res;
    ended = true;
    push(chunk, encoding);
    const cb = callbackOf(chunk, encoding, callback);
    if (cb) res.once('finish', () => cb());
    answered = {
      status: res.statusCode,
      message: res.statusMessage,
      headers: res.getHeaders(),
      // Node's own, untyped here: the names as the handler gave them.
      names: (res as ServerResponse & { getRawHeaderNames(): string[] }).getRawHeaderNames(),
    };
    try {
      resolveDone(captured(res, chunks, total));
    } catch (error) {
      rejectDone(error);
    }
    return res;
  };
  shadow.flushHeaders = (): void => undefined;

  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    for (const [name, descriptor] of previous) {
      if (descriptor === undefined) delete shadow[name];
      else Object.defineProperty(res, name, descriptor);
    }
  };
  return {
    done,
    get ended() {
      return ended;
    },
    release,
    flush() {
      release();
      if (res.writableEnded) return;
      if (answered !== undefined && !res.headersSent && changedSince(res, answered)) {
        // What was answered and stored, not what changed on `res` since: an error handler that
        // ran after the answer (Express, on a throw after res.json()) sets a 500 and its own
        // headers on a response whose body is already the answer's. Names as they were given.
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        res.statusCode = answered.status;
        res.statusMessage = answered.message;
        for (const name of answered.names) {
          const value = answered.headers[name.toLowerCase()];
          if (value !== undefined) res.setHeader(name, value);
        }
      }
      // The body goes out whole, in one piece: its length is what was buffered, whatever a
      // header set halfway said (a partial write followed by an error page). Not for a
      // response without a body (a 304's length is the full representation's) or a HEAD.
      const declared = res.getHeader('content-length');
      if (
        declared !== undefined &&
        Number(declared) !== total &&
        !isNullBodyStatus(res.statusCode) &&
        res.req?.method !== 'HEAD' &&
        !res.headersSent
      ) {
        res.setHeader('content-length', total);
      }
      res.end(
        total === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total),
      );
    },
  };
}

/** Whether the status or any header differs from the answer as it stood at its `end`. */
function changedSince(
  res: ServerResponse,
  answered: { status: number; headers: OutgoingHttpHeaders },
): boolean {
  if (res.statusCode !== answered.status) return true;
  const now = res.getHeaders();
  const names = Object.keys(now);
  if (names.length !== Object.keys(answered.headers).length) return true;
  return names.some((name) => String(now[name]) !== String(answered.headers[name]));
}

function applyHeaders(
  res: ServerResponse,
  headers: OutgoingHttpHeaders | OutgoingHttpHeader[],
): void {
  if (!Array.isArray(headers)) {
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined) res.setHeader(name, value);
    }
    return;
  }
  // [[name, value], ...] or the flat [name, value, name, value] of rawHeaders. A name may come
  // more than once (two Set-Cookie, two Link): its values are set together, as Node does.
  const pairs: Array<[string, OutgoingHttpHeader]> = [];
  if (headers.length > 0 && Array.isArray(headers[0])) {
    for (const pair of headers as unknown as [string, OutgoingHttpHeader][]) {
      pairs.push([pair[0], pair[1]]);
    }
  } else {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      pairs.push([String(headers[i]), headers[i + 1] as OutgoingHttpHeader]);
    }
  }
  const byName = new Map<string, { name: string; values: Array<string | number> }>();
  for (const [name, value] of pairs) {
    const key = name.toLowerCase();
    const entry = byName.get(key) ?? { name, values: [] };
    byName.set(key, entry);
    if (Array.isArray(value)) entry.values.push(...value);
    else entry.values.push(value);
  }
  for (const { name, values } of byName.values()) {
    res.setHeader(name, values.length === 1 ? (values[0] as string | number) : values.map(String));
  }
}

function captured(res: ServerResponse, chunks: Buffer[], total: number): ResponseParts {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.getHeaders())) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, String(value));
  }
  const status = res.statusCode;
  const body = isNullBodyStatus(status) || total === 0 ? null : Buffer.concat(chunks, total);
  return { status, statusText: res.statusMessage ?? '', headers, body };
}

/**
 * Sends the middleware's answer (a replay or a problem) through a Node `ServerResponse`.
 * Headers set earlier on `res` (by middleware that ran before, e.g. CORS) are kept unless the
 * answer sets the same name.
 */
export async function sendNodeResponse(
  res: ServerResponse,
  answer: HandledResponse,
): Promise<void> {
  const parts = answer.parts;
  const headers = parts?.headers ?? answer.response.headers;
  res.statusCode = parts?.status ?? answer.response.status;
  for (const [name, value] of headers) {
    if (name !== 'set-cookie') res.setHeader(name, value);
  }
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (parts !== undefined) {
    res.end(parts.body ?? undefined);
    return;
  }
  const response = answer.response;
  res.end(response.body === null ? undefined : Buffer.from(await response.arrayBuffer()));
}
