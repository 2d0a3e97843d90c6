import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { LeaseLostError } from '../src/errors.js';
import { idempotencyContext } from '../src/http/context.js';
import { nodeIdempotencyKey } from '../src/http/node.js';
import { type FetchLike, createRetryingFetch } from '../src/http/retrying-fetch.js';
import type { Random } from '../src/random.js';
import type { EffectWriter } from './effects-db.js';
import { FaultCode, InjectedFault } from './injected-fault.js';
import type { GuardedStore } from './store-access.js';

/** What the HTTP side counts. */
export interface HttpCounts {
  /** Attempts sent by retryingFetch (through the lossy fetch). */
  attempts: number;
  /** Responses the server sent that the client never saw. */
  lostResponses: number;
  /** Responses marked `Idempotent-Replayed: true` (counted before any loss). */
  replays: number;
  /** Operations submitted twice at the same time. */
  doubleSubmits: number;
  /** Times a client called retryingFetch again after it gave up (same key, same operation). */
  clientRetries: number;
  /** Handler runs on the server. */
  executions: number;
  handlerErrors: number;
  timeoutsAfterEffect: number;
  fenced: number;
  absorbed: number;
  written: number;
  /** Responses by status, as retryingFetch returned them. */
  statuses: Record<string, number>;
}

export function zeroHttpCounts(): HttpCounts {
  return {
    attempts: 0,
    lostResponses: 0,
    replays: 0,
    doubleSubmits: 0,
    clientRetries: 0,
    executions: 0,
    handlerErrors: 0,
    timeoutsAfterEffect: 0,
    fenced: 0,
    absorbed: 0,
    written: 0,
    statuses: {},
  };
}

/** One HTTP operation: the client's key, what it charges, and whether it is double-submitted. */
export interface HttpOp {
  key: string;
  amount: number;
  double: boolean;
}

/** What the server side needs. */
export interface OrderApiDeps {
  /** The instrumented store; undefined for the baseline (no middleware, plain inserts). */
  guard: GuardedStore | undefined;
  leaseMs: number;
  effects: EffectWriter;
  random: Random;
  rates: { handlerError: number; timeoutAfterEffect: number };
  /** Faults stop when this says so (the run drains). */
  isCalm(): boolean;
  counts: HttpCounts;
}

/**
 * The charge API on a real `node:http` server on 127.0.0.1: `POST /charges` with an
 * Idempotency-Key, one effect (a row) per charge in the step `charge`, fenced like the
 * consumers' effects; injected handler exceptions and timeouts after the write. With
 * idempotency it sits behind `nodeIdempotencyKey`; the baseline serves the bare listener.
 */
export async function startOrderApi(
  deps: OrderApiDeps,
): Promise<{ url: string; close(): Promise<void> }> {
  const { counts, effects, guard } = deps;
  const faulty = (rate: number) => !deps.isCalm() && deps.random() < rate;

  async function charge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST' || req.url !== '/charges') {
      res.writeHead(404).end();
      return;
    }
    const body = JSON.parse(await readAll(req)) as { key: string; amount: number };
    counts.executions += 1;
    if (faulty(deps.rates.handlerError)) {
      counts.handlerErrors += 1;
      throw new InjectedFault(FaultCode.HANDLER_FAULT, `injected handler exception on ${body.key}`);
    }
    const row = { phase: 'http', messageId: body.key, step: 'charge', worker: 'api' };
    const write = async () => {
      const ctx = idempotencyContext(req);
      if (guard === undefined || ctx === undefined) {
        await effects.plain(row);
      } else {
        const outcome = await effects.fenced(
          { operation: ctx.key, token: ctx.token, effectKey: ctx.keyFor('charge') },
          { ...row, guardedSince: guard.guardedSince(ctx.key) },
        );
        counts[outcome] += 1;
        if (outcome === 'fenced') {
          throw new LeaseLostError(
            `the charge of ${body.key} was fenced: token ${ctx.token} is stale`,
          );
        }
      }
      if (faulty(deps.rates.timeoutAfterEffect)) {
        counts.timeoutsAfterEffect += 1;
        throw new InjectedFault(
          FaultCode.DEPENDENCY_TIMEOUT,
          'the charge was applied, then the call timed out',
        );
      }
      return { charged: body.amount };
    };
    const ctx = idempotencyContext(req);
    const result = ctx === undefined ? await write() : await ctx.step('charge', write);
    res
      .writeHead(201, { 'content-type': 'application/json' })
      .end(JSON.stringify({ key: body.key, ...result }));
  }

  const listener =
    guard === undefined
      ? (req: IncomingMessage, res: ServerResponse) => {
          charge(req, res).catch(() => {
            if (!res.headersSent) res.writeHead(500).end('Internal Server Error');
            else res.destroy();
          });
        }
      : nodeIdempotencyKey(charge, {
          store: guard.store,
          lease: deps.leaseMs,
          // The injected failures are expected: the client sees a 500 and retries.
          onListenerError: () => undefined,
        });
  const server = createServer((req, res) => {
    void listener(req, res);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the API has no address');
  return {
    url: `http://127.0.0.1:${address.port}/charges`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Lets operations start only up to a count that the run raises as the phases progress. */
export class OpGate {
  private allowed = 0;
  private readonly waiters: Array<{ index: number; resolve: () => void }> = [];

  /** Raises the count (never lowers it). */
  allow(count: number): void {
    if (count <= this.allowed) return;
    this.allowed = count;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i];
      if (waiter && waiter.index < count) {
        this.waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }

  wait(index: number): Promise<void> {
    if (index < this.allowed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ index, resolve }));
  }
}

/** How one operation ended for its client. */
export interface HttpOpResult {
  key: string;
  /** Every submission of it got its 201 in the end. */
  succeeded: boolean;
}

/** What the clients need. */
export interface HttpClientOptions {
  url: string;
  ops: readonly HttpOp[];
  concurrency: number;
  lostResponseRate: number;
  random: Random;
  gate: OpGate;
  /** Clients give up on an operation after this (epoch ms). */
  deadline: number;
  counts: HttpCounts;
  /** Aborts the clients (the run failed): operations not started are not started. */
  signal?: AbortSignal;
}

/**
 * Concurrent clients, each taking the next operation and running it to success with
 * `createRetryingFetch`: one Idempotency-Key per operation, kept across every attempt and
 * every later call. The `fetch` under it loses a share of the responses after the server
 * sent them, the classic "did my payment go through?": the client cannot tell and must retry.
 * When retryingFetch gives up (its latency budget ran out, a 5xx or 409 stayed), the client
 * calls it again for the same operation after a pause, until the run's deadline.
 */
export async function runHttpClients(options: HttpClientOptions): Promise<HttpOpResult[]> {
  const { counts, random } = options;
  const lossy: FetchLike = async (input, init) => {
    counts.attempts += 1;
    const response = await fetch(input, init);
    if (response.headers.get('idempotent-replayed') === 'true') counts.replays += 1;
    if (random() < options.lostResponseRate) {
      // The server answered; the answer dies on the way back.
      await response.arrayBuffer().catch(() => undefined);
      counts.lostResponses += 1;
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('other side closed (injected)'), { code: 'ECONNRESET' }),
      });
    }
    return response;
  };
  const send = createRetryingFetch({
    fetch: lossy,
    deadline: '3s',
    retry: { maxAttempts: 4 },
    random,
  });

  async function submit(op: HttpOp): Promise<boolean> {
    for (;;) {
      try {
        const response = await send(options.url, {
          method: 'POST',
          idempotencyKey: op.key,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ key: op.key, amount: op.amount }),
        });
        const text = await response.text();
        counts.statuses[response.status] = (counts.statuses[response.status] ?? 0) + 1;
        if (response.status === 201) {
          const answer = JSON.parse(text) as { key?: unknown };
          return answer.key === op.key;
        }
      } catch {
        // retryingFetch gave up on network failures: try the same operation again.
      }
      if (Date.now() >= options.deadline || options.signal?.aborted) return false;
      counts.clientRetries += 1;
      await new Promise((r) => setTimeout(r, 200 + random() * 300));
    }
  }

  const results: HttpOpResult[] = [];
  let next = 0;
  const aborted = new Promise<void>((resolve) => {
    if (options.signal?.aborted) resolve();
    options.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  async function client(): Promise<void> {
    for (;;) {
      const index = next++;
      const op = options.ops[index];
      if (op === undefined || options.signal?.aborted) return;
      await Promise.race([options.gate.wait(index), aborted]);
      if (options.signal?.aborted) return;
      if (op.double) counts.doubleSubmits += 1;
      const outcomes = await Promise.all(op.double ? [submit(op), submit(op)] : [submit(op)]);
      results.push({ key: op.key, succeeded: outcomes.every(Boolean) });
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, () => client()));
  return results;
}

/**
 * The request body. A client that gave up on the attempt (retryingFetch's attempt timeout)
 * closes the socket, and a destroyed request never ends: that is a failure of this run of
 * the handler, not a wait for ever: the middleware heartbeats the lease while the handler
 * runs, so a handler that never returns holds its operation (409 to every retry) for ever.
 * The request may already be gone when the handler starts (the client gave up during the
 * begin), so that is checked first, and a read that does not end within 5 s fails too.
 */
function readAll(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    if (req.destroyed) {
      reject(new Error('the client went away before the handler ran'));
      return;
    }
    let text = '';
    const timer = setTimeout(() => fail(new Error('the request body did not end in 5 s')), 5000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
    });
    req.on('end', () => {
      clearTimeout(timer);
      resolve(text);
    });
    req.on('error', fail);
    req.on('close', () => {
      if (!req.readableEnded) fail(new Error('the client went away before the body was read'));
    });
  });
}
