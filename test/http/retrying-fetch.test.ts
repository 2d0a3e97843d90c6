import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { idempotencyContext } from '../../src/http/context.js';
import { nodeIdempotencyKey } from '../../src/http/node.js';
import { createRetryingFetch, retryingFetch } from '../../src/http/retrying-fetch.js';
import { seededRandom } from '../../src/random.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { Gate, tempSqliteStore } from './support/app.js';
import { close, listen } from './support/net.js';

/** What the test server saw of each request. */
interface Hit {
  path: string;
  method: string;
  key: string | undefined;
  body: string;
}

type Script = (hit: Hit, n: number, res: ServerResponse) => void;

/**
 * A real server whose routes answer from a script: the n-th request to a path gets
 * `script(hit, n, res)`. Every request is recorded.
 */
class ScriptedServer {
  readonly hits: Hit[] = [];
  private readonly scripts = new Map<string, Script>();
  private readonly server = createServer((req, res) => void this.handle(req, res));
  url = '';

  route(path: string, script: Script): string {
    this.scripts.set(path, script);
    return `${this.url}${path}`;
  }

  hitsOf(path: string): Hit[] {
    return this.hits.filter((h) => h.path === path);
  }

  async start(): Promise<void> {
    this.url = await listen(this.server);
  }

  stop(): Promise<void> {
    return close(this.server);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = req.url ?? '/';
    const key = req.headers['idempotency-key'];
    const hit: Hit = {
      path,
      method: req.method ?? 'GET',
      key: typeof key === 'string' ? key : undefined,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    this.hits.push(hit);
    const script = this.scripts.get(path);
    if (!script) {
      res.writeHead(404).end();
      return;
    }
    script(hit, this.hitsOf(path).length, res);
  }
}

function answer(
  res: ServerResponse,
  status: number,
  headers: Record<string, string> = {},
  body = '',
): void {
  res.writeHead(status, headers).end(body);
}

/**
 * A client on a fake clock: each retry's sleep is advanced as soon as it starts, so no test
 * waits in real time, and the delays the engine chose are recorded.
 */
function fakeTimeClient(options: Parameters<typeof createRetryingFetch>[0] = {}) {
  const clock = new FakeClock();
  const delays: number[] = [];
  let onRetry: (() => void) | undefined;
  const client = createRetryingFetch({
    clock,
    random: seededRandom(7),
    ...options,
    retry: {
      ...options.retry,
      onRetry(event) {
        delays.push(event.delay);
        onRetry?.();
        setImmediate(() => void clock.advance(event.delay));
      },
    },
  });
  return {
    client,
    delays,
    clock,
    beforeEachRetry(fn: () => void) {
      onRetry = fn;
    },
  };
}

describe('retryingFetch against a real local server', () => {
  const server = new ScriptedServer();
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it('keeps one Idempotency-Key across attempts and resends the same body, until it succeeds', async () => {
    const url = server.route('/flaky', (_hit, n, res) => {
      if (n === 1) return answer(res, 503);
      if (n === 2) return answer(res, 500);
      answer(res, 201, { 'content-type': 'application/json' }, '{"ok":true}');
    });
    const { client, delays } = fakeTimeClient();
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"amount":'));
        controller.enqueue(new TextEncoder().encode('42}'));
        controller.close();
      },
    });
    const response = await client(url, {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/json' },
      duplex: 'half',
    } as RequestInit);
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ ok: true });
    const hits = server.hitsOf('/flaky');
    expect(hits).toHaveLength(3);
    const key = hits[0]?.key;
    expect(key).toMatch(/^[0-9a-f-]{36}$/);
    expect(hits.map((h) => h.key)).toEqual([key, key, key]);
    expect(hits.map((h) => h.body)).toEqual(['{"amount":42}', '{"amount":42}', '{"amount":42}']);
    expect(delays).toHaveLength(2);
  });

  it("waits what the server's Retry-After says, inside the latency budget", async () => {
    const url = server.route('/after', (_hit, n, res) => {
      if (n === 1) return answer(res, 429, { 'retry-after': '1' });
      answer(res, 200, {}, 'done');
    });
    const { client, delays } = fakeTimeClient();
    const response = await client(url, { method: 'POST', body: 'x' });
    expect(await response.text()).toBe('done');
    expect(delays).toEqual([1000]);
  });

  it('returns the last response when the Retry-After would pass the deadline', async () => {
    const url = server.route('/too-late', (_hit, _n, res) =>
      answer(res, 503, { 'retry-after': '5' }, 'later'),
    );
    const { client, delays } = fakeTimeClient({ deadline: '2s' });
    const response = await client(url, { method: 'POST', body: 'x' });
    expect(response.status).toBe(503);
    expect(await response.text()).toBe('later');
    expect(server.hitsOf('/too-late')).toHaveLength(1);
    expect(delays).toEqual([]);
  });

  it('returns a readable last response when the sleep before a retry wakes past the deadline', async () => {
    const url = server.route('/stalled', (_hit, _n, res) =>
      answer(res, 503, { 'retry-after': '1' }, '{"error":"overloaded, ticket T-123"}'),
    );
    const clock = new FakeClock();
    const client = createRetryingFetch({
      clock,
      deadline: '2s',
      retry: {
        // The process stalls during the 1 s sleep: the clock is 2.5 s on when it wakes.
        onRetry: () =>
          setImmediate(() => {
            clock.set(clock.now() + 2500);
            void clock.advance(0);
          }),
      },
    });
    const response = await client(url, { method: 'POST', body: 'x' });
    expect(server.hitsOf('/stalled')).toHaveLength(1);
    expect(response.status).toBe(503);
    expect(response.bodyUsed).toBe(false);
    expect(await response.text()).toBe('{"error":"overloaded, ticket T-123"}');
  });

  /**
   * A route whose requests stay unanswered until the test answers them; resolves `reached`
   * with the count each time one arrives.
   */
  function heldRoute(path: string) {
    const held: ServerResponse[] = [];
    const waiters: Array<{ count: number; done: () => void }> = [];
    const url = server.route(path, (_hit, _n, res) => {
      held.push(res);
      for (const w of waiters.filter((w) => held.length >= w.count)) w.done();
    });
    return {
      url,
      held,
      reached: (count: number) =>
        new Promise<void>((done) => {
          if (held.length >= count) done();
          else waiters.push({ count, done });
        }),
    };
  }

  it("lets an attempt take half of a larger latency budget, not the profile's 1s", async () => {
    const route = heldRoute('/slow-answer');
    const clock = new FakeClock();
    const client = createRetryingFetch({ clock, deadline: '10s' });
    const pending = client(route.url);
    await route.reached(1);
    // Past the profile's 1s per attempt, still inside half of the 10s budget.
    await clock.advance(4_900);
    answer(route.held[0] as ServerResponse, 200, {}, 'slow but fine');
    const response = await pending;
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('slow but fine');
    expect(server.hitsOf('/slow-answer')).toHaveLength(1);
  });

  it('cuts an attempt at half the budget, or at the attemptTimeout the caller set', async () => {
    for (const [path, retry, cutAt] of [
      ['/cut-at-half', {}, 5_000],
      ['/cut-at-own', { attemptTimeout: '1500ms' }, 1_500],
    ] as const) {
      const route = heldRoute(path);
      const clock = new FakeClock();
      const client = createRetryingFetch({ clock, deadline: '10s', retry });
      const pending = client(route.url);
      await route.reached(1);
      await clock.advance(cutAt - 1);
      expect(route.held[0]?.destroyed).toBe(false);
      await clock.advance(1);
      // The first attempt is cut: its connection closes, and after the backoff (at most the
      // 500ms cap of the profile) the second attempt arrives with the same key.
      await clock.advance(500);
      await route.reached(2);
      const [first, second] = server.hitsOf(path);
      expect(second?.key).toBe(first?.key);
      for (const res of route.held) answer(res, 200);
      expect((await pending).status).toBe(200);
    }
  });

  it('never retries a 422 or another 4xx: the response comes back at once', async () => {
    for (const status of [422, 400, 404, 401]) {
      const path = `/status-${status}`;
      const url = server.route(path, (_hit, _n, res) =>
        answer(res, status, {}, `status ${status}`),
      );
      const { client } = fakeTimeClient();
      const response = await client(url, { method: 'POST', body: 'x' });
      expect(response.status).toBe(status);
      expect(await response.text()).toBe(`status ${status}`);
      expect(server.hitsOf(path)).toHaveLength(1);
    }
  });

  it("never retries a replay: the handler's own stored 409 comes back at once", async () => {
    const url = server.route('/replayed-409', (_hit, _n, res) =>
      answer(res, 409, { 'idempotent-replayed': 'true' }, 'seat taken'),
    );
    const { client } = fakeTimeClient();
    const response = await client(url, { method: 'POST', body: 'x' });
    expect(response.status).toBe(409);
    expect(await response.text()).toBe('seat taken');
    expect(server.hitsOf('/replayed-409')).toHaveLength(1);
  });

  it('gives up after the attempts with the last 5xx response', async () => {
    const url = server.route('/down', (_hit, n, res) => answer(res, 502, {}, `attempt ${n}`));
    const { client } = fakeTimeClient();
    const response = await client(url, { method: 'POST', body: 'x' });
    expect(response.status).toBe(502);
    expect(await response.text()).toBe('attempt 3');
    expect(server.hitsOf('/down')).toHaveLength(3);
  });

  it('retries a dropped connection with the same key', async () => {
    const url = server.route('/drop', (_hit, n, res) => {
      if (n === 1) {
        res.socket?.destroy();
        return;
      }
      answer(res, 201, {}, 'created');
    });
    const { client } = fakeTimeClient();
    const response = await client(url, { method: 'POST', body: 'pay', idempotencyKey: 'pay-1' });
    expect(await response.text()).toBe('created');
    expect(server.hitsOf('/drop').map((h) => h.key)).toEqual(['pay-1', 'pay-1']);
  });

  it('uses the key given in the headers, and adds none to a GET (which is still retried)', async () => {
    const post = server.route('/given', (_hit, _n, res) => answer(res, 200));
    const get = server.route('/read', (_hit, n, res) => answer(res, n === 1 ? 503 : 200));
    const { client } = fakeTimeClient();
    await client(post, { method: 'POST', body: 'x', headers: { 'Idempotency-Key': 'mine' } });
    expect(server.hitsOf('/given')[0]?.key).toBe('mine');
    expect((await client(get)).status).toBe(200);
    expect(server.hitsOf('/read').map((h) => h.key)).toEqual([undefined, undefined]);
  });

  it('stops at once when the signal aborts, with the signal reason', async () => {
    const url = server.route('/abort', (_hit, _n, res) => answer(res, 503));
    const controller = new AbortController();
    const reason = new Error('the user left');
    const { client, beforeEachRetry } = fakeTimeClient();
    beforeEachRetry(() => controller.abort(reason));
    await expect(
      client(url, { method: 'POST', body: 'x', signal: controller.signal }),
    ).rejects.toBe(reason);
    expect(server.hitsOf('/abort')).toHaveLength(1);

    const aborted = AbortSignal.abort(reason);
    await expect(client(url, { method: 'POST', body: 'x', signal: aborted })).rejects.toBe(reason);
    expect(server.hitsOf('/abort')).toHaveLength(1);
  });

  it('bounds the reading of a stalled request body by the deadline and the signal, as fetch does', async () => {
    let fetched = 0;
    const stalled = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"amount":'));
        },
        pull: () => new Promise<void>(() => {}),
      });
    const clock = new FakeClock(0);
    const client = createRetryingFetch({
      clock,
      deadline: '500ms',
      fetch: async () => {
        fetched++;
        return new Response('ok');
      },
    });
    const byDeadline = client('http://127.0.0.1:1/pay', {
      method: 'POST',
      body: stalled(),
      duplex: 'half',
    } as RequestInit).catch((e: unknown) => e);
    await clock.advance(500);
    expect(await byDeadline).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    const controller = new AbortController();
    const reason = new Error('the user left');
    const bySignal = client('http://127.0.0.1:1/pay', {
      method: 'POST',
      body: stalled(),
      duplex: 'half',
      signal: controller.signal,
    } as RequestInit).catch((e: unknown) => e);
    controller.abort(reason);
    expect(await bySignal).toBe(reason);
    expect(fetched).toBe(0);
  });

  it("stops on the policy's own signal (a shutdown) even when the call brings a signal of its own", async () => {
    const url = server.route('/shutdown', (_hit, _n, res) => answer(res, 503));
    const shutdown = new AbortController();
    const reason = new Error('shutting down');
    const clock = new FakeClock(0);
    let retries = 0;
    const client = createRetryingFetch({
      clock,
      random: seededRandom(1),
      retry: {
        signal: shutdown.signal,
        onRetry: () => {
          retries++;
          shutdown.abort(reason);
        },
      },
    });
    const call = client(url, {
      method: 'POST',
      body: 'x',
      signal: new AbortController().signal,
    }).catch((e: unknown) => e);
    expect(await call).toBe(reason);
    expect(retries).toBe(1);
    expect(server.hitsOf('/shutdown')).toHaveLength(1);
  });

  it('refuses bad input with typed errors', async () => {
    expect(() => createRetryingFetch(null as never)).toThrow(InvalidArgumentError);
    const { client } = fakeTimeClient();
    await expect(
      client(
        server.route('/x', () => undefined),
        { method: 'POST', idempotencyKey: 'k'.repeat(256) },
      ),
    ).rejects.toThrow(InvalidArgumentError);
  });

  it('the default instance works with the global fetch', async () => {
    const url = server.route('/default', (_hit, _n, res) => answer(res, 201, {}, 'ok'));
    const response = await retryingFetch(url, { method: 'POST', body: 'x' });
    expect(response.status).toBe(201);
    expect(server.hitsOf('/default')[0]?.key).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('retryingFetch against the Idempotency-Key middleware', () => {
  it('treats a 409 as wait-and-retry and ends with the replay of the one execution', async () => {
    const sqlite = tempSqliteStore();
    const gate = new Gate();
    let runs = 0;
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const http = createServer(
      nodeIdempotencyKey(
        async (req, res) => {
          runs++;
          started();
          await idempotencyContext(req)?.step('hold', () => gate.opened);
          res.writeHead(201, { 'content-type': 'text/plain' }).end(`charged once (run ${runs})`);
        },
        { store: sqlite.store, lease: '1s' },
      ),
    );
    const url = await listen(http);
    try {
      // A first client's request is running when ours arrives with the same key.
      const first = fetch(url, {
        method: 'POST',
        headers: { 'idempotency-key': 'charge-7' },
        body: 'x',
      });
      await running;
      const { client, delays, beforeEachRetry } = fakeTimeClient({ deadline: '5s' });
      beforeEachRetry(() => gate.open());
      const response = await client(url, { method: 'POST', body: 'x', idempotencyKey: 'charge-7' });
      expect(response.status).toBe(201);
      expect(response.headers.get('idempotent-replayed')).toBe('true');
      expect(await response.text()).toBe('charged once (run 1)');
      expect(delays).toEqual([1000]);
      expect((await first).status).toBe(201);
      expect(runs).toBe(1);
    } finally {
      await close(http);
      await sqlite.cleanup();
    }
  });
});
