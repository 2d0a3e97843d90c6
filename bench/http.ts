/**
 * What the Idempotency-Key middleware costs: requests per second and latency through a
 * node:http and a Fastify endpoint, without the middleware and with it on the SQLite store
 * (and Redis when one answers on 127.0.0.1:6379), for fresh keys (every request a new
 * operation: begin + complete) and replayed keys (every request a repeat: one begin that
 * returns the stored response), all in one run. `npm run bench:http`.
 *
 * The servers run in a child process and autocannon in this one, so the load generator does
 * not take the servers' CPU. Each store is wrapped to count its calls; after each case, 100
 * requests sent one after another give the exact store round trips per request, shown next
 * to the throughput: the goal is at most one for a replay and two for a fresh request. Every case is warmed up, then measured for DURATION seconds
 * with CONNECTIONS connections (env vars; defaults 5 and 16). The handler does what a real
 * one does least of: reads the JSON body and answers 201 with a small JSON document; with
 * HANDLER_IO_MS (default 0) it first waits that long, as for a database call of its own, so
 * that requests overlap as on a real server.
 *
 * "server cpu µs/req" is the CPU time (user + system) the server process used over the
 * measured load, divided by the requests served: autocannon runs in this process and takes a
 * core of its own, so throughput alone would also measure the load generator (the plain
 * endpoints are limited by it). "cost/req" is that CPU time against the plain endpoint of the
 * same framework: what the middleware and its store client cost the server per request.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { createRequire } from 'node:module';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { fastifyIdempotencyKey } from '../src/http/fastify.js';
import { nodeIdempotencyKey } from '../src/http/node.js';
import type { IdempotencyStore } from '../src/idempotency/store.js';
import { createRedisStore } from '../src/stores/redis/index.js';
import { createSqliteStore } from '../src/stores/sqlite/index.js';

const DURATION = Number(process.env.DURATION ?? 5);
const WARMUP = Number(process.env.WARMUP ?? 1);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const BODY = JSON.stringify({ item: 'book', quantity: 1, note: 'x'.repeat(64) });
/** Each handler first waits this long, as for its own database call (0: answers at once). */
const HANDLER_IO_MS = Number(process.env.HANDLER_IO_MS ?? 0);

function handlerIo(): Promise<void> | undefined {
  return HANDLER_IO_MS > 0
    ? new Promise((resolve) => setTimeout(resolve, HANDLER_IO_MS))
    : undefined;
}

/** One endpoint the child serves. */
interface Endpoint {
  name: string;
  framework: 'node:http' | 'fastify';
  store: 'none' | 'sqlite' | 'redis';
  url: string;
}

// ---------------------------------------------------------------- child: the servers

/** Counts store calls, to check round trips per request. */
function counted(store: IdempotencyStore, counter: { calls: number }): IdempotencyStore {
  const wrapped = Object.create(store) as IdempotencyStore;
  for (const method of [
    'begin',
    'complete',
    'fail',
    'release',
    'heartbeat',
    'saveStep',
    'get',
  ] as const) {
    const original = store[method].bind(store) as (...args: unknown[]) => Promise<never>;
    (wrapped as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      counter.calls++;
      return original(...args);
    };
  }
  return wrapped;
}

function redisUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: 6379 });
    socket.setTimeout(500, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

let orders = 0;
async function nodeHandler(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = (await readBody(req)) as { item: string };
  await handlerIo();
  res
    .writeHead(201, { 'content-type': 'application/json' })
    .end(JSON.stringify({ order: ++orders, item: body.item }));
}

async function listenOn(server: ReturnType<typeof createServer>): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
}

async function serve(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'reprocess-bench-http-'));
  const counter = { calls: 0 };
  const stores: { name: 'sqlite' | 'redis'; store: IdempotencyStore }[] = [
    {
      name: 'sqlite',
      store: counted(createSqliteStore({ path: join(dir, 'bench.sqlite') }), counter),
    },
  ];
  let redis: Redis | undefined;
  if (await redisUp()) {
    redis = new Redis('redis://127.0.0.1:6379');
    const prefix = `bench-http-${process.pid}:`;
    stores.push({ name: 'redis', store: counted(createRedisStore(redis, { prefix }), counter) });
  }

  const endpoints: Endpoint[] = [];
  endpoints.push({
    name: 'node:http plain',
    framework: 'node:http',
    store: 'none',
    url: await listenOn(createServer((req, res) => void nodeHandler(req, res))),
  });
  for (const { name, store } of stores) {
    endpoints.push({
      name: `node:http + ${name}`,
      framework: 'node:http',
      store: name,
      url: await listenOn(createServer(nodeIdempotencyKey(nodeHandler, { store }))),
    });
  }
  for (const { name, store } of [{ name: 'none' as const, store: undefined }, ...stores]) {
    const app = Fastify();
    if (store) await app.register(fastifyIdempotencyKey({ store }));
    app.post('/orders', async (request, reply) => {
      const body = request.body as { item: string };
      await handlerIo();
      return reply.code(201).send({ order: ++orders, item: body.item });
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    endpoints.push({
      name: store ? `fastify + ${name}` : 'fastify plain',
      framework: 'fastify',
      store: name,
      url: `${url}/orders`,
    });
  }

  // The parent reads and resets the call counter here, and reads the CPU time this process
  // has used (user + system, µs).
  const admin = createServer((req, res) => {
    const calls = counter.calls;
    if (req.url === '/reset') counter.calls = 0;
    const { user, system } = process.cpuUsage();
    res.end(JSON.stringify({ calls, cpu: user + system }));
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  const adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
  process.stdout.write(`${JSON.stringify({ endpoints, adminUrl })}\n`);

  process.on('SIGTERM', () => {
    void (async () => {
      if (redis) {
        const keys = await redis.keys(`bench-http-${process.pid}:*`);
        for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500));
        await redis.quit();
      }
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    })();
  });
}

// ---------------------------------------------------------------- parent: the load

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

interface AutocannonRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: { headers: Record<string, string> }) => unknown;
}

type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  method: string;
  headers: Record<string, string>;
  body: string;
  requests?: AutocannonRequest[];
}) => Promise<AutocannonResult>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

interface Row {
  endpoint: Endpoint;
  keys: 'fresh' | 'replayed' | 'none';
  result: AutocannonResult;
  callsPerRequest: number | undefined;
  /** CPU time of the server process per request over the measured load, µs. */
  serverCpu: number;
}

let run = 0;
function load(endpoint: Endpoint, keys: Row['keys'], duration: number): Promise<AutocannonResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const tag = `${++run}-${process.pid}`;
  let n = 0;
  const requests: AutocannonRequest[] = [];
  if (keys === 'fresh') {
    requests.push({
      setupRequest(request) {
        request.headers = { ...headers, 'idempotency-key': `fresh-${tag}-${++n}` };
        return request;
      },
    });
  } else if (keys === 'replayed') {
    headers['idempotency-key'] = `replayed-${endpoint.store}`;
  }
  return autocannon({
    url: endpoint.url,
    connections: CONNECTIONS,
    duration,
    method: 'POST',
    headers,
    body: BODY,
    ...(requests.length > 0 ? { requests } : {}),
  });
}

async function admin(adminUrl: string, reset: boolean): Promise<{ calls: number; cpu: number }> {
  const response = await fetch(`${adminUrl}/${reset ? 'reset' : 'read'}`);
  return (await response.json()) as { calls: number; cpu: number };
}

async function measure(adminUrl: string, endpoint: Endpoint, keys: Row['keys']): Promise<Row> {
  if (keys === 'replayed') {
    // The one operation every request of this case repeats.
    const seeded = await fetch(endpoint.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': `replayed-${endpoint.store}`,
      },
      body: BODY,
    });
    if (seeded.status !== 201)
      throw new Error(`seeding ${endpoint.name} answered ${seeded.status}`);
  }
  if (WARMUP > 0) await load(endpoint, keys, WARMUP);
  const before = await admin(adminUrl, false);
  const result = await load(endpoint, keys, DURATION);
  const after = await admin(adminUrl, false);
  return {
    endpoint,
    keys,
    result,
    serverCpu: (after.cpu - before.cpu) / Math.max(1, result.requests.total),
    callsPerRequest:
      endpoint.store === 'none' ? undefined : await exactCalls(adminUrl, endpoint, keys),
  };
}

/**
 * Store calls per request, counted exactly: under load the counter's window cuts requests in
 * flight, so this sends EXACT_REQUESTS requests one after another and divides.
 */
const EXACT_REQUESTS = 100;
async function exactCalls(
  adminUrl: string,
  endpoint: Endpoint,
  keys: Row['keys'],
): Promise<number> {
  await admin(adminUrl, true);
  for (let i = 0; i < EXACT_REQUESTS; i++) {
    const key =
      keys === 'fresh' ? `exact-${process.pid}-${++run}-${i}` : `replayed-${endpoint.store}`;
    const response = await fetch(endpoint.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: BODY,
    });
    await response.arrayBuffer();
    if (response.status !== 201) throw new Error(`${endpoint.name} answered ${response.status}`);
  }
  return (await admin(adminUrl, true)).calls / EXACT_REQUESTS;
}

function table(rows: Row[]): string {
  const plain = new Map(
    rows.filter((r) => r.keys === 'none').map((r) => [r.endpoint.framework, r]),
  );
  const head = [
    'endpoint',
    'keys',
    'req/s',
    'p50 ms',
    'p99 ms',
    'non-2xx',
    'store calls/req',
    'server cpu µs/req',
    'cost/req vs plain',
  ];
  const lines = rows.map((r) => {
    const base = plain.get(r.endpoint.framework);
    const rps = r.result.requests.average;
    let cost = '';
    if (base && r.keys !== 'none') {
      const us = Math.round(r.serverCpu - base.serverCpu);
      cost = `${us >= 0 ? '+' : ''}${us} µs`;
    }
    return [
      r.endpoint.name,
      r.keys,
      Math.round(rps).toLocaleString('en-US'),
      r.result.latency.p50.toFixed(1),
      r.result.latency.p99.toFixed(1),
      String(r.result.non2xx + r.result.errors + r.result.timeouts),
      r.callsPerRequest === undefined ? '' : r.callsPerRequest.toFixed(2),
      r.serverCpu.toFixed(0),
      cost,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: string[]) =>
    `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  return [fmt(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(fmt)].join(
    '\n',
  );
}

async function main(): Promise<void> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), 'serve'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  try {
    const first = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the server process exited (${code})`)));
    });
    const { endpoints, adminUrl } = JSON.parse(first) as {
      endpoints: Endpoint[];
      adminUrl: string;
    };
    console.log(
      `bench:http: ${DURATION}s per case after ${WARMUP}s warm-up, ${CONNECTIONS} connections, ` +
        `handler I/O ${HANDLER_IO_MS} ms, ` +
        `node ${process.version}; stores: ${[...new Set(endpoints.map((e) => e.store))].join(', ')}\n`,
    );
    const rows: Row[] = [];
    for (const endpoint of endpoints) {
      const cases: Row['keys'][] = endpoint.store === 'none' ? ['none'] : ['fresh', 'replayed'];
      for (const keys of cases) {
        const row = await measure(adminUrl, endpoint, keys);
        rows.push(row);
        console.error(
          `  ${endpoint.name} (${keys}): ${Math.round(row.result.requests.average)} req/s`,
        );
      }
    }
    console.log(`\n${table(rows)}\n`);
    const calls = rows.filter((r) => r.callsPerRequest !== undefined);
    const worst = (keys: Row['keys']) =>
      Math.max(...calls.filter((r) => r.keys === keys).map((r) => r.callsPerRequest ?? 0));
    console.log(
      `store round trips per request: fresh at most ${worst('fresh').toFixed(2)} (goal 2), ` +
        `replayed at most ${worst('replayed').toFixed(2)} (goal 1)`,
    );
  } finally {
    child.kill('SIGTERM');
  }
}

if (process.argv[2] === 'serve') {
  await serve();
} else {
  await main();
}
