import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBLEM_BASE } from '../../../src/http/problem.js';
import type { BeginResult, IdempotencyStore } from '../../../src/idempotency/store.js';
import type { InProgressPolicy } from '../../../src/idempotency/types.js';
import { type OrderBody, TestApp, tempSqliteStore, unreachableStore } from './app.js';
import { nodeRequest, rawRequest } from './net.js';

/** The options every adapter under test gets (each adds its own `scope` on `x-tenant`). */
export interface CommonOptions {
  store: IdempotencyStore;
  maxBodyBytes: number;
  maxStoredBodyBytes: number;
  onInProgress?: InProgressPolicy;
}

/**
 * Starts a real server on 127.0.0.1 for `app`, guarded with `options`. It serves
 * `POST /orders` (JSON body, scope from the `x-tenant` header, `TestApp.handle`) and
 * `GET /orders` (answers `listed`).
 */
export type StartServer = (
  app: TestApp,
  options: CommonOptions,
) => Promise<{ url: string; close(): Promise<void> }>;

export const LIMITS = { maxBodyBytes: 4096, maxStoredBodyBytes: 8192 } as const;

/** A POST through the global fetch (undici). */
export function post(
  url: string,
  body: OrderBody | string,
  options: { key?: string | undefined; tenant?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    ...options.headers,
  };
  if (options.key !== undefined) headers['idempotency-key'] = options.key;
  if (options.tenant !== undefined) headers['x-tenant'] = options.tenant;
  return fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export function newKey(label: string): string {
  return `${label}-${randomUUID()}`;
}

/** Checks a problem+json response and returns its body. */
export async function expectProblem(
  response: Response,
  status: number,
  slug: string,
  code: string,
): Promise<Record<string, unknown>> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toBe('application/problem+json');
  const problem = (await response.json()) as Record<string, unknown>;
  expect(problem).toMatchObject({ type: `${PROBLEM_BASE}${slug}`, status, code });
  expect(typeof problem.title).toBe('string');
  expect(typeof problem.detail).toBe('string');
  return problem;
}

/**
 * 50 identical requests at once. The handler holds the first execution on a gate that opens
 * only when every other request has its answer, so all 50 overlap for real. With a correct
 * store exactly one executes; with a broken one a second execution would also count toward
 * opening the gate, and the test fails on the count instead of hanging.
 */
export async function fiftyConcurrent(
  urls: string | readonly string[],
  app: TestApp,
  key: string,
  tenant: string,
): Promise<Response[]> {
  const targets = typeof urls === 'string' ? [urls] : urls;
  const gate = app.gate(key);
  let answered = 0;
  const maybeOpen = (): void => {
    if (answered + app.count(tenant, key) >= 50) gate.open();
  };
  const body: OrderBody = { item: 'rush', mode: 'gate', gate: key };
  const requests = Array.from({ length: 50 }, (_, i) =>
    post(targets[i % targets.length] as string, body, { key, tenant }).then(async (response) => {
      await response.clone().arrayBuffer();
      answered++;
      maybeOpen();
      return response;
    }),
  );
  void app.started(tenant, key).then(maybeOpen);
  return Promise.all(requests);
}

/** A store for one scenario suite, and how to remove what it wrote. */
export type StoreFactory = () => Promise<{ store: IdempotencyStore; cleanup(): Promise<void> }>;

const sqliteFactory: StoreFactory = async () => tempSqliteStore();

/**
 * The scenarios every adapter must pass, against a real server and a real store (SQLite in a
 * temp dir unless `stores` says otherwise). A handler that throws must come out as a 500
 * (each framework's own error path).
 */
export function describeAdapterScenarios(
  name: string,
  start: StartServer,
  stores: StoreFactory = sqliteFactory,
): void {
  describe(`${name}: Idempotency-Key semantics over a real server`, () => {
    const app = new TestApp();
    let base: string;
    let url: string;
    let stop: () => Promise<void>;
    let cleanup: (() => Promise<void>) | undefined;

    beforeAll(async () => {
      const made = await stores();
      cleanup = () => made.cleanup();
      const server = await start(app, { store: made.store, ...LIMITS });
      base = server.url;
      url = `${base}/orders`;
      stop = () => server.close();
    });
    afterAll(async () => {
      await stop?.();
      await cleanup?.();
    });

    it('runs once, then replays the stored status, body and allow-listed headers', async () => {
      const key = newKey('replay');
      const first = await post(url, { item: 'book' }, { key, tenant: 't1' });
      expect(first.status).toBe(201);
      expect(first.headers.get('set-cookie')).toBe('session=s3cret; HttpOnly');
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const text = await first.text();
      expect(JSON.parse(text)).toEqual({
        order: 't1:book',
        tenant: 't1',
        item: 'book',
        execution: 1,
      });

      const again = await post(url, { item: 'book' }, { key, tenant: 't1' });
      expect(again.status).toBe(201);
      expect(await again.text()).toBe(text);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(again.headers.get('location')).toBe('/orders/1');
      expect(again.headers.get('set-cookie')).toBeNull();
      expect(again.headers.get('x-execution')).toBeNull();

      // Another client, the quoted (structured-field) form of the same key: the same operation.
      const viaNode = await nodeRequest(url, {
        headers: {
          'content-type': 'application/json',
          'idempotency-key': `"${key}"`,
          'x-tenant': 't1',
        },
        body: JSON.stringify({ item: 'book' }),
      });
      expect(viaNode.status).toBe(201);
      expect(viaNode.body).toBe(text);
      expect(viaNode.headers['idempotent-replayed']).toBe('true');
      expect(app.count('t1', key)).toBe(1);
    });

    it('lets methods it does not guard through, without a key', async () => {
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('listed');
    });

    it('answers a guarded request without a key with a 400 problem, without running it', async () => {
      const before = app.total();
      const response = await post(url, { item: 'book' }, { tenant: 't1' });
      await expectProblem(response, 400, 'idempotency-key-missing', 'IDEMPOTENCY_KEY_MISSING');
      expect(app.total()).toBe(before);
    });

    it('answers malformed keys with a 400 problem', async () => {
      const before = app.total();
      const body = { item: 'book' };
      for (const key of ['', 'x'.repeat(256), 'one, two']) {
        const response = await post(url, body, { key, tenant: 't1' });
        await expectProblem(response, 400, 'idempotency-key-invalid', 'IDEMPOTENCY_KEY_INVALID');
      }
      // Two header fields, as Node's own client sends an array.
      const twice = await nodeRequest(url, {
        headers: { 'content-type': 'application/json', 'idempotency-key': ['a1', 'a2'] },
        body: JSON.stringify(body),
      });
      expect(twice.status).toBe(400);
      expect(JSON.parse(twice.body)).toMatchObject({ code: 'IDEMPOTENCY_KEY_INVALID' });
      // A tab and a non-ASCII byte reach the middleware (Node's parser lets them through).
      for (const value of ['a\tb', 'caf\xe9']) {
        const raw = await rawRequest(
          base,
          `POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nIdempotency-Key: ${value}`,
          JSON.stringify(body),
        );
        expect(raw.status).toBe(400);
        expect(raw.text).toContain('IDEMPOTENCY_KEY_INVALID');
      }
      // A control character never gets that far: Node's parser answers 400 itself.
      const control = await rawRequest(
        base,
        'POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nIdempotency-Key: a\x01b',
        JSON.stringify(body),
      );
      expect(control.status).toBe(400);
      expect(app.total()).toBe(before);

      const longest = await post(url, body, { key: 'k'.repeat(255), tenant: newKey('t') });
      expect(longest.status).toBe(201);
    });

    it('answers the same key with a different body with a 422 problem', async () => {
      const key = newKey('reuse');
      expect((await post(url, { item: 'book' }, { key, tenant: 't1' })).status).toBe(201);
      const other = await post(url, { item: 'lamp' }, { key, tenant: 't1' });
      await expectProblem(other, 422, 'idempotency-key-reuse', 'IDEMPOTENCY_KEY_REUSE');
      expect(app.count('t1', key)).toBe(1);
    });

    it('keeps a path that starts with // its own route: the same key there is not a replay', async () => {
      const key = newKey('double-slash');
      const first = await post(url, { item: 'book' }, { key, tenant: 't1' });
      expect(first.status).toBe(201);
      // Resolved as a URL reference, `//refunds/orders` would name the host `refunds` and the
      // route `/orders`: the first request's operation, replayed to another endpoint.
      const other = await post(`${base}//refunds/orders`, { item: 'book' }, { key, tenant: 't1' });
      expect(other.headers.get('idempotent-replayed')).toBeNull();
      await other.arrayBuffer();
    });

    it('answers a body over the limit with a 413 problem, declared or streamed', async () => {
      const before = app.total();
      const big = JSON.stringify({ item: 'x'.repeat(LIMITS.maxBodyBytes) });
      const declared = await post(url, big, { key: newKey('big'), tenant: 't1' });
      await expectProblem(declared, 413, 'request-body-too-large', 'REQUEST_BODY_TOO_LARGE');
      const chunked = await nodeRequest(url, {
        headers: { 'content-type': 'application/json', 'idempotency-key': newKey('big') },
        body: big,
        chunked: true,
      });
      expect(chunked.status).toBe(413);
      expect(JSON.parse(chunked.body)).toMatchObject({ code: 'REQUEST_BODY_TOO_LARGE' });
      expect(app.total()).toBe(before);
    });

    it('answers a repeat while the first runs with 409 and Retry-After, then replays', async () => {
      const key = newKey('busy');
      const body: OrderBody = { item: 'slow', mode: 'gate', gate: key };
      const first = post(url, body, { key, tenant: 't1' });
      await app.started('t1', key);
      const busy = await post(url, body, { key, tenant: 't1' });
      const problem = await expectProblem(
        busy,
        409,
        'idempotency-in-progress',
        'IDEMPOTENCY_IN_PROGRESS',
      );
      // The default hint (1s): the first request is running, not crashed.
      expect(busy.headers.get('retry-after')).toBe('1');
      expect(problem.retryAfter).toBe(1);
      app.gate(key).open();
      expect((await first).status).toBe(201);
      const replay = await post(url, body, { key, tenant: 't1' });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(app.count('t1', key)).toBe(1);
    });

    it('runs 50 concurrent identical requests exactly once: 1 execution, 49 answers of 409', async () => {
      const key = newKey('fifty');
      const responses = await fiftyConcurrent(url, app, key, 't50');
      expect(app.count('t50', key)).toBe(1);
      const statuses = responses.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      expect(statuses.filter((s) => s === 409)).toHaveLength(49);
      const replay = await post(
        url,
        { item: 'rush', mode: 'gate', gate: key },
        { key, tenant: 't50' },
      );
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(app.count('t50', key)).toBe(1);
    });

    it('releases the key on a 5xx, so the retry runs again, and stores the retry', async () => {
      const key = newKey('fail');
      const body: OrderBody = { item: 'book', mode: 'fail-once' };
      expect((await post(url, body, { key, tenant: 't1' })).status).toBe(503);
      const retry = await post(url, body, { key, tenant: 't1' });
      expect(retry.status).toBe(201);
      expect(((await retry.json()) as { execution: number }).execution).toBe(2);
      const replay = await post(url, body, { key, tenant: 't1' });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(((await replay.json()) as { execution: number }).execution).toBe(2);
    });

    it('releases the key when the handler throws, so the retry runs again', async () => {
      const key = newKey('throw');
      const body: OrderBody = { item: 'book', mode: 'throw-once' };
      const failed = await post(url, body, { key, tenant: 't1' });
      expect(failed.status).toBe(500);
      expect(failed.headers.get('idempotent-replayed')).toBeNull();
      const retry = await post(url, body, { key, tenant: 't1' });
      expect(retry.status).toBe(201);
      expect(app.count('t1', key)).toBe(2);
    });

    it('stores 4xx and 3xx answers, but not 429', async () => {
      for (const [status, stored] of [
        [404, true],
        [303, true],
        [429, false],
      ] as const) {
        const key = newKey(`status-${status}`);
        const body: OrderBody = { item: 'book', mode: 'status', status };
        const first = await post(url, body, { key, tenant: 't1' });
        expect(first.status).toBe(status);
        const again = await nodeRequest(url, {
          headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-tenant': 't1' },
          body: JSON.stringify(body),
        });
        expect(again.status).toBe(status);
        expect(again.headers['idempotent-replayed']).toBe(stored ? 'true' : undefined);
        expect(app.count('t1', key)).toBe(stored ? 1 : 2);
      }
    });

    it('keeps completed steps across a released run: the charge runs once', async () => {
      const key = newKey('step');
      const charges = app.charges;
      const body: OrderBody = { item: 'book', mode: 'step-then-fail-once' };
      expect((await post(url, body, { key, tenant: 't1' })).status).toBe(502);
      const retry = await post(url, body, { key, tenant: 't1' });
      expect(retry.status).toBe(201);
      expect(((await retry.json()) as { charge: number }).charge).toBe(charges + 1);
      expect(app.charges).toBe(charges + 1);
      expect(app.count('t1', key)).toBe(2);
    });

    it('sends a response too large to store, and answers a repeat with a 410 problem, not a second run', async () => {
      const key = newKey('huge');
      const body: OrderBody = { item: 'book', mode: 'big', size: LIMITS.maxStoredBodyBytes * 2 };
      const first = await post(url, body, { key, tenant: 't1' });
      expect(first.status).toBe(201);
      const order = (await first.json()) as { padding: string };
      expect(order.padding).toHaveLength(LIMITS.maxStoredBodyBytes * 2);
      const again = await post(url, body, { key, tenant: 't1' });
      const problem = await expectProblem(again, 410, 'response-not-stored', 'RESULT_TOO_LARGE');
      expect(problem.originalStatus).toBe(201);
      expect(app.count('t1', key)).toBe(1);
    });

    it('stores and replays a response body of exactly maxStoredBodyBytes', async () => {
      const key = newKey('exact');
      const body: OrderBody = { item: 'book', mode: 'exact', size: LIMITS.maxStoredBodyBytes };
      const first = await post(url, body, { key, tenant: 't1' });
      expect(first.status).toBe(201);
      expect(await first.text()).toHaveLength(LIMITS.maxStoredBodyBytes);
      const again = await post(url, body, { key, tenant: 't1' });
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.text()).toBe('x'.repeat(LIMITS.maxStoredBodyBytes));
      expect(app.count('t1', key)).toBe(1);
    });

    it("never replays one tenant's response to another", async () => {
      const key = newKey('shared');
      const body = { item: 'book' };
      const a = (await (await post(url, body, { key, tenant: 'alice' })).json()) as {
        tenant: string;
      };
      const b = (await (await post(url, body, { key, tenant: 'bob' })).json()) as {
        tenant: string;
      };
      expect(a.tenant).toBe('alice');
      expect(b.tenant).toBe('bob');
      for (const tenant of ['alice', 'bob', 'alice', 'bob']) {
        const replay = await post(url, body, { key, tenant });
        expect(replay.headers.get('idempotent-replayed')).toBe('true');
        expect(((await replay.json()) as { tenant: string }).tenant).toBe(tenant);
      }
      expect(app.count('alice', key)).toBe(1);
      expect(app.count('bob', key)).toBe(1);
    });
  });

  describe(`${name}: a store outage`, () => {
    const app = new TestApp();
    let url: string;
    let stop: () => Promise<void>;
    beforeAll(async () => {
      const server = await start(app, { store: unreachableStore(), ...LIMITS });
      url = `${server.url}/orders`;
      stop = () => server.close();
    });
    afterAll(() => stop?.());

    it('answers 503 with Retry-After and never runs the handler unguarded', async () => {
      const response = await post(url, { item: 'book' }, { key: newKey('down'), tenant: 't1' });
      await expectProblem(response, 503, 'store-unavailable', 'STORE_UNAVAILABLE');
      expect(response.headers.get('retry-after')).toBe('1');
      expect(app.total()).toBe(0);
    });
  });

  describe(`${name}: waiting out an in-progress twin`, () => {
    const app = new TestApp();
    let url: string;
    let cleanup: (() => Promise<void>) | undefined;
    let stop: () => Promise<void>;
    let inProgressAnswers = 0;
    let onInProgress: () => void = () => undefined;
    beforeAll(async () => {
      // Counts begins that found the operation in progress: the gate opens once every
      // waiting request has polled at least once.
      const made = await stores();
      cleanup = () => made.cleanup();
      const inner = made.store;
      const store = Object.create(inner) as IdempotencyStore;
      store.begin = async (
        ...args: Parameters<IdempotencyStore['begin']>
      ): Promise<BeginResult> => {
        const result = await inner.begin(...args);
        if (result.kind === 'existing' && result.record.status === 'in_progress') {
          inProgressAnswers++;
          onInProgress();
        }
        return result;
      };
      const server = await start(app, {
        store,
        ...LIMITS,
        onInProgress: { wait: '20s', poll: '10ms' },
      });
      url = `${server.url}/orders`;
      stop = () => server.close();
    });
    afterAll(async () => {
      await stop?.();
      await cleanup?.();
    });

    it('with onInProgress: wait, 50 concurrent requests give 1 execution and 49 replays', async () => {
      const key = newKey('wait');
      onInProgress = () => {
        if (inProgressAnswers >= 49) app.gate(key).open();
      };
      const body: OrderBody = { item: 'rush', mode: 'gate', gate: key };
      const requests = Array.from({ length: 50 }, () => post(url, body, { key, tenant: 'tw' }));
      const responses = await Promise.all(requests);
      expect(app.count('tw', key)).toBe(1);
      const texts = await Promise.all(responses.map((r) => r.text()));
      expect(responses.every((r) => r.status === 201)).toBe(true);
      expect(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(
        49,
      );
      expect(new Set(texts).size).toBe(1);
    });
  });
}
