import { unhandledDuring } from '../helpers/unhandled.js';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, StoreUnavailableError } from '../../src/errors.js';
import { idempotencyContext } from '../../src/http/context.js';
import { type Next, idempotencyKey } from '../../src/http/idempotency-key.js';
import { PROBLEM_BASE, PROBLEM_TYPES } from '../../src/http/problem.js';
import { createMemoryStore } from '../../src/idempotency/index.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import { countingStore } from './support/app.js';
import { expectProblem } from './support/scenarios.js';

function request(
  body: BodyInit | null,
  options: { key?: string; method?: string; path?: string; headers?: Record<string, string> } = {},
): Request {
  const headers = new Headers(options.headers);
  if (options.key !== undefined) headers.set('idempotency-key', options.key);
  const init: RequestInit & { duplex?: 'half' } = {
    method: options.method ?? 'POST',
    headers,
    body,
  };
  if (body instanceof ReadableStream) init.duplex = 'half';
  return new Request(`https://api.example${options.path ?? '/orders'}`, init);
}

/** A handler that counts its runs and echoes the body it was handed. */
/** A text response whose body is streamed: `chunks` chunks of `size` x's, one per pull. */
function streamed(status: number, chunks: number, size: number): Response {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= chunks) return controller.close();
      sent++;
      controller.enqueue(new TextEncoder().encode('x'.repeat(size)));
    },
  });
  return new Response(body, { status, headers: { 'content-type': 'text/plain' } });
}

function echo(status = 201): Next & { runs: number } {
  const handler = async (req: Request) => {
    handler.runs++;
    return new Response(JSON.stringify({ run: handler.runs, body: await req.text() }), {
      status,
      headers: { 'content-type': 'application/json' },
    });
  };
  handler.runs = 0;
  return handler;
}

describe('idempotencyKey (Request/Response core)', () => {
  it('validates its options with typed errors', () => {
    const store = createMemoryStore();
    expect(() => idempotencyKey({} as never)).toThrow(InvalidArgumentError);
    expect(() => idempotencyKey({ store, methods: ['PO ST'] })).toThrow(/methods/);
    expect(() => idempotencyKey({ store, maxBodyBytes: -1 })).toThrow(/maxBodyBytes/);
    expect(() => idempotencyKey({ store, maxStoredBodyBytes: 1.5 })).toThrow(/maxStoredBodyBytes/);
    expect(() => idempotencyKey({ store, fingerprint: 'body' as never })).toThrow(/fingerprint/);
    expect(() => idempotencyKey({ store, replayHeaders: ['bad header'] })).toThrow(/replayHeaders/);
    expect(() => idempotencyKey({ store, lease: '0s' })).toThrow(/lease/);
    expect(() => idempotencyKey({ store, mehtods: ['PUT'] } as never)).toThrow(
      /idempotencyKey: unknown option "mehtods"/,
    );
  });

  it('refuses a principal scope(req) gives as an empty string, before the handler runs', async () => {
    const guard = idempotencyKey({
      store: createMemoryStore(),
      // The docs' first draft: an empty x-tenant header became the principal ''.
      scope: (req) => req.headers.get('x-tenant') ?? undefined,
    });
    const handler = echo();
    const sent = guard(request('{}', { key: 'k-empty', headers: { 'x-tenant': '' } }), handler);
    await expect(sent).rejects.toThrow(InvalidArgumentError);
    await expect(sent).rejects.toThrow(/scope\(req\) must return a non-empty string or undefined/);
    expect(handler.runs).toBe(0);
    const optional = idempotencyKey({
      store: createMemoryStore(),
      scope: (req) => req.headers.get('x-tenant') || undefined,
    });
    const answered = await optional(
      request('{}', { key: 'k-empty', headers: { 'x-tenant': '' } }),
      handler,
    );
    expect(answered.status).toBe(201);
    expect(handler.runs).toBe(1);
  });

  it('keeps the method in the operation: POST then PATCH with one key are two operations', async () => {
    for (const fingerprint of [undefined, false as const]) {
      const guard = idempotencyKey(
        fingerprint === undefined
          ? { store: createMemoryStore() }
          : { store: createMemoryStore(), fingerprint },
      );
      const handler = echo(200);
      const post = await guard(
        request('{"qty":1}', { key: 'k-method', path: '/orders/1' }),
        handler,
      );
      expect(post.status).toBe(200);
      const patch = await guard(
        request('{"qty":1}', { key: 'k-method', path: '/orders/1', method: 'PATCH' }),
        handler,
      );
      expect(patch.status).toBe(200);
      expect(patch.headers.get('idempotent-replayed')).toBeNull();
      expect(handler.runs).toBe(2);
    }
  });

  it('hands the handler a fresh request carrying the body, and the idempotency context', async () => {
    const guard = idempotencyKey({ store: createMemoryStore() });
    const original = request('{"a":1}', { key: 'k1' });
    let seen: Request | undefined;
    const response = await guard(original, async (fresh) => {
      seen = fresh;
      const ctx = idempotencyContext(fresh);
      const step = await ctx?.step('once', () => 'done');
      return new Response(`${await fresh.text()} ${step} ${ctx?.keyFor('psp').length}`);
    });
    expect(await response.text()).toBe('{"a":1} done 64');
    expect(seen).not.toBe(original);
    expect(original.bodyUsed).toBe(true);
    expect(idempotencyContext(original)).toBe(idempotencyContext(seen as Request));
  });

  it('guards the configured methods only; a key is required unless told otherwise', async () => {
    const store = createMemoryStore();
    const handler = echo(200);
    const putOnly = idempotencyKey({ store, methods: ['put'] });
    expect((await putOnly(request('x', { method: 'POST' }), handler)).status).toBe(200);
    const missing = await putOnly(request('x', { method: 'PUT' }), handler);
    await expectProblem(missing, 400, 'idempotency-key-missing', 'IDEMPOTENCY_KEY_MISSING');

    const optional = idempotencyKey({
      store,
      required: (req) => req.headers.get('x-strict') === '1',
    });
    const open = await optional(
      request('x'),
      async (req) => new Response(String(idempotencyContext(req))),
    );
    expect(await open.text()).toBe('undefined');
    const strict = await optional(request('x', { headers: { 'x-strict': '1' } }), handler);
    expect(strict.status).toBe(400);
  });

  it('answers a control character in the key with a 400 problem naming it', async () => {
    const guard = idempotencyKey({ store: createMemoryStore() });
    const handler = echo();
    const response = await guard(request('x', { key: 'a\u0001b' }), handler);
    const problem = await expectProblem(
      response,
      400,
      'idempotency-key-invalid',
      'IDEMPOTENCY_KEY_INVALID',
    );
    expect(problem.detail).toMatch(/U\+0001/);
    expect(handler.runs).toBe(0);
  });

  it('scopes by method and route: the same key on another path is another operation, unless route() merges them', async () => {
    const store = createMemoryStore();
    const handler = echo();
    const byPath = idempotencyKey({ store });
    await byPath(request('x', { key: 'k', path: '/a' }), handler);
    const other = await byPath(request('x', { key: 'k', path: '/b' }), handler);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(handler.runs).toBe(2);

    const byRoute = idempotencyKey({ store, route: () => '/orders/:id', namespace: 'orders' });
    await byRoute(request('x', { key: 'k', path: '/orders/1' }), handler);
    const merged = await byRoute(request('x', { key: 'k', path: '/orders/2' }), handler);
    expect(merged.headers.get('idempotent-replayed')).toBe('true');
    expect(handler.runs).toBe(3);
  });

  it('fingerprints method, route, query and body by default; false skips it; a function picks what matters', async () => {
    const store = createMemoryStore();
    const handler = echo();
    const strict = idempotencyKey({ store });
    await strict(request('{"a":1}', { key: 'q', path: '/orders?x=1' }), handler);
    const otherQuery = await strict(request('{"a":1}', { key: 'q', path: '/orders?x=2' }), handler);
    await expectProblem(otherQuery, 422, 'idempotency-key-reuse', 'IDEMPOTENCY_KEY_REUSE');

    const loose = idempotencyKey({ store, fingerprint: false, namespace: 'loose' });
    await loose(request('one', { key: 'f' }), handler);
    const different = await loose(request('two', { key: 'f' }), handler);
    expect(different.headers.get('idempotent-replayed')).toBe('true');

    const semantic = idempotencyKey({
      store,
      namespace: 'semantic',
      fingerprint: ({ body }) => JSON.parse(new TextDecoder().decode(body)) as unknown,
    });
    await semantic(request('{"a":1,"b":2}', { key: 's' }), handler);
    const reordered = await semantic(request('{ "b": 2, "a": 1 }', { key: 's' }), handler);
    expect(reordered.headers.get('idempotent-replayed')).toBe('true');
    const changed = await semantic(request('{"a":1,"b":3}', { key: 's' }), handler);
    expect(changed.status).toBe(422);
  });

  it('awaits an async fingerprint: a promise never matches every body', async () => {
    const guard = idempotencyKey({
      store: createMemoryStore(),
      fingerprint: async ({ body }) => JSON.parse(new TextDecoder().decode(body)) as unknown,
    });
    const handler = echo();
    await guard(request('{"amount":10}', { key: 'af' }), handler);
    const same = await guard(request('{ "amount": 10 }', { key: 'af' }), handler);
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    const other = await guard(request('{"amount":99999}', { key: 'af' }), handler);
    await expectProblem(other, 422, 'idempotency-key-reuse', 'IDEMPOTENCY_KEY_REUSE');
    expect(handler.runs).toBe(1);
  });

  it("a fingerprint nested too deep is the client's 400, never run; a circular one is still the programmer's error", async () => {
    const deep = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
    const handler = echo();
    const guard = idempotencyKey({
      store: createMemoryStore(),
      fingerprint: ({ body }) => JSON.parse(new TextDecoder().decode(body)) as unknown,
    });
    const refused = await guard(request(deep(2000), { key: 'deep' }), handler);
    await expectProblem(refused, 400, 'request-nested-too-deep', 'REQUEST_NESTED_TOO_DEEP');
    // Within the bound it is fingerprinted as usual.
    expect((await guard(request(deep(900), { key: 'deep' }), handler)).status).toBe(201);
    expect(handler.runs).toBe(1);

    const circular = idempotencyKey({
      store: createMemoryStore(),
      fingerprint: () => {
        const loop: { self?: unknown } = {};
        loop.self = loop;
        return loop;
      },
    });
    await expect(circular(request('x', { key: 'loop' }), handler)).rejects.toThrow(
      InvalidArgumentError,
    );
    expect(handler.runs).toBe(1);
  });

  it('records the failure when a step result was not storable, even if the handler answers 500', async () => {
    const guard = idempotencyKey({ store: createMemoryStore() });
    let charges = 0;
    const handler: Next = async (req) => {
      try {
        await idempotencyContext(req)?.step('charge', () => {
          charges++;
          return () => 'a function cannot be stored';
        });
      } catch {
        return new Response('oops', { status: 500 });
      }
      return new Response('charged', { status: 201 });
    };
    expect((await guard(request('x', { key: 'us' }), handler)).status).toBe(500);
    // A repeat gets the recorded failure (thrown, for the framework to answer, as every
    // remembered failure is); the charge never runs twice.
    await expect(guard(request('x', { key: 'us' }), handler)).rejects.toMatchObject({
      code: 'RESULT_NOT_STORABLE',
    });
    expect(charges).toBe(1);
  });

  it('says in the 409 detail the same wait as Retry-After', async () => {
    const guard = idempotencyKey({ store: createMemoryStore(), lease: '30s' });
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const first = guard(request('x', { key: 'ip' }), async () => {
      entered();
      await held;
      return new Response('done', { status: 201 });
    });
    await running; // the first holds the key
    const busy = await guard(request('x', { key: 'ip' }), echo());
    const problem = await expectProblem(
      busy,
      409,
      'idempotency-in-progress',
      'IDEMPOTENCY_IN_PROGRESS',
    );
    const seconds = Number(busy.headers.get('retry-after'));
    expect(problem.retryAfter).toBe(seconds);
    expect(problem.detail).toBe(`the operation is already in progress; retry after ${seconds} s`);
    release();
    expect((await first).status).toBe(201);
  });

  it('answers 413 for a declared or a streamed body over the limit, without running the handler', async () => {
    const guard = idempotencyKey({ store: createMemoryStore(), maxBodyBytes: 10 });
    const handler = echo();
    const declared = await guard(request('0123456789A', { key: 'big1' }), handler);
    await expectProblem(declared, 413, 'request-body-too-large', 'REQUEST_BODY_TOO_LARGE');
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(4));
      },
    });
    const streamed = await guard(request(endless, { key: 'big2' }), handler);
    expect(streamed.status).toBe(413);
    expect(pulled).toBeLessThan(10);
    expect(handler.runs).toBe(0);
    expect((await guard(request('0123456789', { key: 'fits' }), handler)).status).toBe(201);
  });

  it('stores and replays a response body of exactly maxStoredBodyBytes, whole or in chunks', async () => {
    const guard = idempotencyKey({ store: createMemoryStore(), maxStoredBodyBytes: 100 });
    let runs = 0;
    const whole: Next = async () => {
      runs++;
      return new Response('x'.repeat(100), {
        status: 201,
        headers: { 'content-type': 'text/plain' },
      });
    };
    const chunked: Next = async () => {
      runs++;
      return streamed(201, 4, 25);
    };
    for (const [key, handler] of [
      ['exact-whole', whole],
      ['exact-chunked', chunked],
    ] as const) {
      expect((await guard(request('x', { key }), handler)).status).toBe(201);
      const again = await guard(request('x', { key }), handler);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.text()).toBe('x'.repeat(100));
    }
    expect(runs).toBe(2);
  });

  it('marks a response whose replayed headers are too large to keep: a repeat gets the 410 with the original status', async () => {
    const guard = idempotencyKey({ store: createMemoryStore(), maxStoredBodyBytes: 10 });
    let runs = 0;
    const handler: Next = async () => {
      runs++;
      return new Response('ok', { status: 201, headers: { link: `<${'x'.repeat(70_000)}>` } });
    };
    const first = await guard(request('x', { key: 'huge-headers' }), handler);
    expect(first.status).toBe(201);
    expect(first.headers.get('link')).toHaveLength(70_002);
    const again = await guard(request('x', { key: 'huge-headers' }), handler);
    const problem = await expectProblem(again, 410, 'response-not-stored', 'RESULT_TOO_LARGE');
    expect(problem).toMatchObject({ originalStatus: 201 });
    expect(runs).toBe(1);
    // Counted as stored: 40,000 quotes are 40 KB sent but 80 KB in the stored JSON.
    const quoted: Next = async () => {
      runs++;
      return new Response('ok', { status: 201, headers: { link: `<${'"'.repeat(40_000)}>` } });
    };
    expect((await guard(request('x', { key: 'quoted-headers' }), quoted)).status).toBe(201);
    const repeat = await guard(request('x', { key: 'quoted-headers' }), quoted);
    expect(
      await expectProblem(repeat, 410, 'response-not-stored', 'RESULT_TOO_LARGE'),
    ).toMatchObject({ originalStatus: 201 });
    expect(runs).toBe(2);
  });

  it('streams a response larger than the stored bound, and marks the key so a repeat gets a 410', async () => {
    const guard = idempotencyKey({ store: createMemoryStore(), maxStoredBodyBytes: 100 });
    let runs = 0;
    const handler: Next = async () => {
      runs++;
      return streamed(200, 10, 50);
    };
    const first = await guard(request('x', { key: 'huge' }), handler);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe('x'.repeat(500));
    const again = await guard(request('x', { key: 'huge' }), handler);
    const problem = await expectProblem(again, 410, 'response-not-stored', 'RESULT_TOO_LARGE');
    expect(problem).toMatchObject({ originalStatus: 200 });
    expect(runs).toBe(1);
  });

  it('replays only the allow-listed headers, and the list is configurable', async () => {
    const handler: Next = async () =>
      new Response('{}', {
        status: 201,
        headers: [
          ['content-type', 'application/json'],
          ['set-cookie', 'a=1'],
          ['set-cookie', 'b=2'],
          ['x-trace', 't1'],
          ['etag', '"v1"'],
        ],
      });
    const defaults = idempotencyKey({ store: createMemoryStore() });
    await defaults(request('x', { key: 'h' }), handler);
    const replay = await defaults(request('x', { key: 'h' }), handler);
    expect([...replay.headers]).toEqual([
      ['content-type', 'application/json'],
      ['etag', '"v1"'],
      ['idempotent-replayed', 'true'],
    ]);
    const custom = idempotencyKey({
      store: createMemoryStore(),
      replayHeaders: ['X-Trace', 'etag'],
    });
    await custom(request('x', { key: 'h' }), handler);
    const customReplay = await custom(request('x', { key: 'h' }), handler);
    expect(customReplay.headers.getSetCookie()).toEqual([]);
    expect(customReplay.headers.get('x-trace')).toBe('t1');
    expect(customReplay.headers.get('etag')).toBe('"v1"');
    expect(customReplay.headers.get('content-type')).toBeNull();
  });

  it('refuses to store and replay a credential header, even when asked', () => {
    for (const name of ['set-cookie', 'Set-Cookie2', 'authorization', 'Proxy-Authorization']) {
      expect(() =>
        idempotencyKey({ store: createMemoryStore(), replayHeaders: ['content-type', name] }),
      ).toThrow(/must not name/);
    }
  });

  it('stores what shouldStore accepts; the rest releases the key', async () => {
    const guard = idempotencyKey({
      store: createMemoryStore(),
      shouldStore: (response) =>
        response.status === 201 && response.headers.get('cache-control') !== 'no-store',
    });
    let runs = 0;
    const handler: Next = async () => {
      runs++;
      return new Response('ok', {
        status: 201,
        headers: runs === 1 ? { 'cache-control': 'no-store' } : {},
      });
    };
    await guard(request('x', { key: 'ss' }), handler);
    await guard(request('x', { key: 'ss' }), handler);
    const third = await guard(request('x', { key: 'ss' }), handler);
    expect(runs).toBe(2);
    expect(third.headers.get('idempotent-replayed')).toBe('true');
  });

  it("rethrows the handler's own error untouched (even a reprocess error) and releases the key", async () => {
    const guard = idempotencyKey({ store: createMemoryStore() });
    const own = new StoreUnavailableError("the handler's payment database is down");
    let runs = 0;
    const failing: Next = async () => {
      runs++;
      throw own;
    };
    await expect(guard(request('x', { key: 'e' }), failing)).rejects.toBe(own);
    const retry = await guard(request('x', { key: 'e' }), echo());
    expect(retry.status).toBe(201);
    expect(runs).toBe(1);
  });

  it("sends the handler's response when storing it fails afterwards, and reports the failure", async () => {
    const inner = createMemoryStore();
    const flaky: IdempotencyStore = Object.create(inner);
    flaky.begin = inner.begin.bind(inner);
    flaky.complete = () => Promise.reject(new Error('connection reset'));
    const reported: unknown[] = [];
    const guard = idempotencyKey({ store: flaky, onError: (e) => reported.push(e) });
    const response = await guard(request('x', { key: 'late' }), echo());
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ run: 1, body: 'x' });
    expect(reported).toHaveLength(1);
    expect((reported[0] as { code?: string }).code).toBe('STORE_UNAVAILABLE');
  });

  it("an onError that throws or rejects changes nothing: the handler's response still goes out, once", async () => {
    for (const onError of [
      () => {
        throw new Error('logger down');
      },
      async () => {
        throw new Error('logger down');
      },
    ]) {
      const inner = createMemoryStore();
      const flaky: IdempotencyStore = Object.create(inner);
      flaky.begin = inner.begin.bind(inner);
      flaky.complete = () => Promise.reject(new Error('connection reset'));
      const guard = idempotencyKey({ store: flaky, onError });
      const handler = echo();
      let status: number | undefined;
      const unhandled = await unhandledDuring(async () => {
        status = (await guard(request('x', { key: 'late' }), handler)).status;
      });
      expect(status).toBe(201);
      expect(handler.runs).toBe(1);
      expect(unhandled).toEqual([]);
      // A problem answer (the store down at begin) reports too, and still answers 503.
      const down: IdempotencyStore = Object.create(inner);
      down.begin = () => Promise.reject(new Error('connection refused'));
      const guardDown = idempotencyKey({ store: down, onError });
      const refused = await guardDown(request('x', { key: 'down' }), handler);
      expect(refused.status).toBe(503);
    }
  });

  it('answers a record it cannot read as a response with a 500 problem', async () => {
    const guard = idempotencyKey({
      store: createMemoryStore(),
      codec: { encode: (v) => JSON.stringify(v), decode: () => ({ not: 'a response' }) },
    });
    await guard(request('x', { key: 'c' }), echo());
    const replay = await guard(request('x', { key: 'c' }), echo());
    await expectProblem(replay, 500, 'record-corrupt', 'RECORD_CORRUPT');
  });

  it("bounds the lease by the runtime's remaining time", async () => {
    const store = countingStore(createMemoryStore());
    const guard = idempotencyKey({ store, lease: '30s' });
    await guard(request('x', { key: 'l1' }), echo(), { remainingMs: 4_200 });
    await guard(request('x', { key: 'l2' }), echo(), { remainingMs: 90_000 });
    await guard(request('x', { key: 'l3' }), echo());
    expect(store.leases).toEqual([4_200, 30_000, 30_000]);
  });

  it('costs one store round trip for a replay and two for a fresh request', async () => {
    const store = countingStore(createMemoryStore());
    const guard = idempotencyKey({ store });
    await guard(request('x', { key: 'rt' }), echo());
    expect(Object.fromEntries(store.calls)).toEqual({ begin: 1, complete: 1 });
    await guard(request('x', { key: 'rt' }), echo());
    expect(Object.fromEntries(store.calls)).toEqual({ begin: 2, complete: 1 });
  });
});

describe('problem types', () => {
  it("answers a store that fails with a 503 that tells the client nothing of the driver's words", async () => {
    const reported: unknown[] = [];
    const failing = {
      ...createMemoryStore(),
      name: 'failing',
      begin: async () => {
        throw new Error('role "app" does not exist at db-internal.example:5432');
      },
    } as IdempotencyStore;
    const guard = idempotencyKey({ store: failing, onError: (e) => reported.push(e) });
    const response = await guard(request('x', { key: 'sf' }), echo());
    const problem = await expectProblem(response, 503, 'store-unavailable', 'STORE_UNAVAILABLE');
    expect(problem.detail).toBe('the idempotency store did not answer; retry later');
    expect(JSON.stringify(problem)).not.toContain('db-internal');
    expect(String((reported[0] as Error)?.message)).toContain('db-internal');
  });

  it('each has a stable type URI under the base, a title and an HTTP status', () => {
    expect(
      Object.fromEntries(
        Object.entries(PROBLEM_TYPES).map(([code, p]) => [
          code,
          [p.type.slice(PROBLEM_BASE.length), p.status],
        ]),
      ),
    ).toEqual({
      IDEMPOTENCY_KEY_MISSING: ['idempotency-key-missing', 400],
      IDEMPOTENCY_KEY_INVALID: ['idempotency-key-invalid', 400],
      REQUEST_BODY_TOO_LARGE: ['request-body-too-large', 413],
      REQUEST_NESTED_TOO_DEEP: ['request-nested-too-deep', 400],
      IDEMPOTENCY_KEY_REUSE: ['idempotency-key-reuse', 422],
      IDEMPOTENCY_IN_PROGRESS: ['idempotency-in-progress', 409],
      RESULT_TOO_LARGE: ['response-not-stored', 410],
      STORE_UNAVAILABLE: ['store-unavailable', 503],
      RECORD_CORRUPT: ['record-corrupt', 500],
    });
    expect(PROBLEM_BASE).toBe('https://reprocess.dev/problems/');
  });
});
