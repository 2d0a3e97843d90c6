/**
 * Messages per second through the consumer runtime with an idempotent no-op handler (one new
 * operation per message: begin + complete in the store), beside a raw consume-and-ack loop on
 * the same broker, in one run, for RabbitMQ (quorum queue) and NATS JetStream (durable pull
 * consumer). For each case N messages are published first, then the drain is timed from the
 * first delivery to the N-th ack (connecting and declaring queues are not part of it).
 *
 * Cases per broker: raw loop; the adapter alone; consumer + memory, SQLite (temp file, WAL) and
 * Redis stores, each twice: with CONCURRENCY and PREFETCH (throughput: the store pipelines),
 * and with createConsumer's defaults (concurrency 1, prefetch 1: one message at a time, so it
 * measures the round-trip latency of broker + store, not throughput; N_DEFAULTS messages);
 * the Redis store with `batch: false` (its default batches), and the SQLite store with
 * `checkpoint: 'inline'` (its default checkpoints on a thread), tuned only. Rounds are
 * interleaved (each round runs every case once, in a shuffled order) so drift of a shared
 * machine hits every case alike; the table shows the median and the best round.
 *
 * Beside the rates, the CPU of each side over the timed drain: this process (client CPU µs per
 * message), the broker's server and, for the Redis cases, redis-server (read from /proc, when
 * they run on this machine), how much of the drain this process's event loop was running,
 * and how many of the machine's cores were busy in all. The servers
 * share the cores with the client, so a consumer case can reach a share of the raw rate only as
 * far as its client CPU per message allows: a single-threaded client whose event loop is busy
 * all the time runs at about 1 / (its µs per message) whatever the broker could take.
 *
 * `npm run bench:consumer` (env: N messages per case, default 20000; ROUNDS, default 3;
 * PREFETCH, default 256; CONCURRENCY, default 64; N_DEFAULTS, default min(N, 3000);
 * BROKERS=amqp,nats; CASES=raw,adapter,memory,sqlite,sqlite-inline,redis,redis-unbatched;
 * DEFAULTS=0 skips the default runs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { type EventLoopUtilization, performance as nodePerformance } from 'node:perf_hooks';
import { join } from 'node:path';
import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type NatsConnection, connect as natsConnect, headers } from '@nats-io/transport-node';
import { type ChannelModel, connect as amqpConnect } from 'amqplib';
import { Redis } from 'ioredis';
import {
  createAmqpSource,
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../src/consumer/amqp/index.js';
import { createConsumer } from '../src/consumer/consumer.js';
import {
  createJetStreamSource,
  declareJetStreamTopology,
  deleteJetStreamTopology,
  resolveJetStreamTopology,
} from '../src/consumer/nats/index.js';
import type { MessageSource } from '../src/consumer/types.js';
import type { IdempotencyStore } from '../src/idempotency/store.js';
import { createMemoryStore } from '../src/stores/memory-store.js';
import { createRedisStore } from '../src/stores/redis/index.js';
import { createSqliteStore } from '../src/stores/sqlite/index.js';
import { CORES, type CpuMark, cpuSince, findServers, markCpu } from './support/server-cpu.js';

const N = Number(process.env.N ?? 20_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const PREFETCH = Number(process.env.PREFETCH ?? 256);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 64);
const BROKERS = (process.env.BROKERS ?? 'amqp,nats').split(',');
type Case = 'raw' | 'adapter' | 'memory' | 'sqlite' | 'sqlite-inline' | 'redis' | 'redis-unbatched';
const CASES = (
  process.env.CASES ?? 'raw,adapter,memory,sqlite,sqlite-inline,redis,redis-unbatched'
).split(',') as Case[];
const N_DEFAULTS = Number(process.env.N_DEFAULTS ?? Math.min(N, 3000));
const DEFAULTS = process.env.DEFAULTS !== '0';

/** One measured case: a consumer case runs tuned (CONCURRENCY, PREFETCH) or on the defaults. */
interface Variant {
  kind: Case;
  defaults: boolean;
  messages: number;
  name: string;
}

function variants(): Variant[] {
  const out: Variant[] = [];
  for (const kind of CASES) {
    out.push({ kind, defaults: false, messages: N, name: kind });
    // One message at a time leaves nothing to batch, and the side-by-side variants of a store
    // (redis-unbatched, sqlite-inline) run tuned only.
    const tunedOnly = ['raw', 'adapter', 'redis-unbatched', 'sqlite-inline'];
    if (DEFAULTS && !tunedOnly.includes(kind)) {
      out.push({ kind, defaults: true, messages: N_DEFAULTS, name: `${kind}d` });
    }
  }
  return out;
}
const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `bench${process.pid.toString(36)}${Date.now().toString(36)}`;

type StoreKind = 'memory' | 'sqlite' | 'sqlite-inline' | 'redis' | 'redis-unbatched';

/**
 * The CPU side of the last timed drain:
 * - `clientUs`: this process (user + system). The broker and Redis run elsewhere, so it is the
 *   client side's cost, which a loaded machine distorts far less than wall time (other
 *   processes steal wall time, not this process's CPU time);
 * - `serversUs`: the servers' CPU by command name, where they run on this machine
 *   (see server-cpu.ts), and `busyCores`: how many of the machine's cores were busy in all;
 * - `loopBusy`: the share of the drain the event loop was running (not waiting for I/O): near
 *   1, this process is the bottleneck.
 */
interface DrainCpu {
  clientUs: number;
  serversUs: Map<string, number>;
  busyCores: number;
  loopBusy: number;
}

const SERVERS = findServers(['beam.smp', 'nats-server', 'redis-server']);
let drainStart: { cpu: NodeJS.CpuUsage; servers: CpuMark; loop: EventLoopUtilization } | undefined;
let drained: DrainCpu | undefined;

function firstDelivery(): number {
  drainStart = {
    cpu: process.cpuUsage(),
    servers: markCpu(SERVERS),
    loop: nodePerformance.eventLoopUtilization(),
  };
  return performance.now();
}

function lastAck(started: number): number {
  if (drainStart) {
    const used = process.cpuUsage(drainStart.cpu);
    const spent = cpuSince(drainStart.servers, SERVERS);
    drained = {
      clientUs: used.user + used.system,
      serversUs: spent.serversUs,
      busyCores: spent.busyCores,
      loopBusy: nodePerformance.eventLoopUtilization(drainStart.loop).utilization,
    };
  }
  return performance.now() - started;
}

/** One case's round: msg/s, then CPU per message (µs) and shares (undefined: not measured). */
interface Sample {
  rate: number;
  clientUs: number;
  brokerUs: number | undefined;
  redisUs: number | undefined;
  busyCores: number;
  loopBusyPercent: number;
}

function sampleOf(rate: number, messages: number, broker: string, redis: boolean): Sample {
  if (!drained) throw new Error('no drain was timed');
  const perMessage = (us: number | undefined) => (us === undefined ? undefined : us / messages);
  return {
    rate,
    clientUs: drained.clientUs / messages,
    brokerUs: perMessage(drained.serversUs.get(broker)),
    redisUs: redis ? perMessage(drained.serversUs.get('redis-server')) : undefined,
    busyCores: drained.busyCores,
    loopBusyPercent: drained.loopBusy * 100,
  };
}

interface Broker {
  name: string;
  /** The broker's server process on this machine (its command name). */
  server: string;
  /** Publishes N messages to a fresh queue or stream; returns its name. */
  fill(round: number, label: string, messages: number): Promise<string>;
  /** Raw loop: consume and ack until N acks; resolves with the elapsed ms. */
  raw(target: string): Promise<number>;
  source(target: string): MessageSource;
  drop(target: string): Promise<void>;
  close(): Promise<void>;
}

function body(i: number): Buffer {
  return Buffer.from(JSON.stringify({ orderId: `o-${i}`, amount: i % 1000, currency: 'EUR' }));
}

async function amqpBroker(): Promise<Broker> {
  const admin: ChannelModel = await amqpConnect(AMQP_URL);
  const topologyOf = (queue: string) => resolveAmqpTopology({ queue, delayTiers: ['1s'] });
  return {
    name: 'RabbitMQ 3.10 (quorum queue)',
    server: 'beam.smp',
    async fill(round, label, messages) {
      const queue = `${RUN}.${label}.${round}`;
      await declareAmqpTopology(admin, topologyOf(queue));
      const channel = await admin.createConfirmChannel();
      for (let i = 0; i < messages; i++) {
        const ok = channel.sendToQueue(queue, body(i), {
          persistent: true,
          messageId: `${label}-${round}-${i}`,
          headers: { 'idempotency-key': `${RUN}-${label}-${round}-${i}` },
        });
        if (!ok) await new Promise((resolve) => channel.once('drain', resolve));
        if (i % 2000 === 1999) await channel.waitForConfirms();
      }
      await channel.waitForConfirms();
      await channel.close();
      return queue;
    },
    async raw(queue) {
      const connection = await amqpConnect(AMQP_URL);
      const channel = await connection.createChannel();
      await channel.prefetch(PREFETCH);
      let started = 0;
      let acked = 0;
      const elapsed = await new Promise<number>((resolve) => {
        void channel.consume(queue, (message) => {
          if (message === null) return;
          if (started === 0) started = firstDelivery();
          channel.ack(message);
          acked += 1;
          if (acked === N) resolve(lastAck(started));
        });
      });
      await connection.close();
      return elapsed;
    },
    source: (queue) => createAmqpSource({ url: AMQP_URL, queue, delayTiers: ['1s'] }),
    drop: (queue) => deleteAmqpTopology(admin, topologyOf(queue)),
    close: () => admin.close(),
  };
}

async function natsBroker(): Promise<Broker> {
  const nc: NatsConnection = await natsConnect({ servers: NATS_URL });
  const jsm: JetStreamManager = await jetstreamManager(nc);
  const js = jetstream(nc);
  const topologyOf = (stream: string) => resolveJetStreamTopology({ stream, durable: 'bench' });
  return {
    name: 'NATS 2.9 JetStream (durable pull consumer)',
    server: 'nats-server',
    async fill(round, label, messages) {
      const stream = `${RUN}_${label}_${round}`;
      await declareJetStreamTopology(jsm, topologyOf(stream));
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < messages; i++) {
        const h = headers();
        h.set('idempotency-key', `${RUN}-${label}-${round}-${i}`);
        pending.push(js.publish(`${stream}.orders`, body(i), { headers: h }));
        if (pending.length === 1000) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
      return stream;
    },
    async raw(stream) {
      const consumer = await js.consumers.get(stream, 'bench');
      const messages = await consumer.consume({ max_messages: PREFETCH });
      let started = 0;
      let acked = 0;
      for await (const message of messages) {
        if (started === 0) started = firstDelivery();
        message.ack();
        acked += 1;
        if (acked === N) break;
      }
      const elapsed = lastAck(started);
      await messages.close();
      return elapsed;
    },
    source: (stream) => createJetStreamSource({ servers: NATS_URL, stream, durable: 'bench' }),
    drop: (stream) => deleteJetStreamTopology(jsm, topologyOf(stream)),
    close: () => nc.close(),
  };
}

interface Stores {
  open(kind: StoreKind): Promise<IdempotencyStore & { close?(): Promise<void> }>;
  close(): Promise<void>;
}

function stores(): Stores {
  const dir = mkdtempSync(join(tmpdir(), 'reprocess-bench-consumer-'));
  const redis = new Redis(REDIS_URL, { lazyConnect: false });
  let n = 0;
  return {
    async open(kind) {
      n += 1;
      if (kind === 'memory') return createMemoryStore();
      if (kind === 'sqlite' || kind === 'sqlite-inline') {
        const checkpoint = kind === 'sqlite' ? 'background' : 'inline';
        return createSqliteStore({ path: join(dir, `store-${n}.sqlite`), checkpoint });
      }
      return createRedisStore(redis, { prefix: `${RUN}:${n}:`, batch: kind !== 'redis-unbatched' });
    },
    async close() {
      // Remove the bench's keys, then the files.
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${RUN}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
      redis.disconnect();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function throughConsumer(
  broker: Broker,
  target: string,
  store: IdempotencyStore,
  variant: Variant,
): Promise<number> {
  let acked = 0;
  let failures = 0;
  let done: (ms: number) => void = () => {};
  const finished = new Promise<number>((resolve) => {
    done = resolve;
  });
  const inner = broker.source(target);
  let started = 0;
  // Timed from the first delivery, as the raw loop is: connecting and declaring are not drained.
  const source: MessageSource = {
    name: inner.name,
    start: (onDelivery, options) =>
      inner.start((delivery) => {
        if (started === 0) started = firstDelivery();
        return onDelivery(delivery);
      }, options),
    stop: () => inner.stop(),
    close: () => inner.close(),
  };
  const consumer = createConsumer({
    source,
    ...(variant.defaults ? {} : { concurrency: CONCURRENCY, prefetch: PREFETCH }),
    idempotency: { store, operation: 'bench' },
    handler: async () => undefined,
    onEvent(event) {
      if (event.type === 'acked') {
        acked += 1;
        if (acked === variant.messages) done(lastAck(started));
      } else if (event.type !== 'released') {
        failures += 1;
      }
    },
  });
  await consumer.start();
  const elapsed = await finished;
  await consumer.stop({ timeoutMs: 1000 });
  await source.close();
  if (failures > 0) throw new Error(`${failures} message(s) were not acked on the first try`);
  return elapsed;
}

/** The adapter alone: its source hands deliveries to a loop that acks each, no runtime, no store. */
async function throughAdapter(broker: Broker, target: string): Promise<number> {
  const source = broker.source(target);
  let acked = 0;
  let done: (ms: number) => void = () => {};
  const finished = new Promise<number>((resolve) => {
    done = resolve;
  });
  let started = 0;
  await source.start(
    async (delivery) => {
      if (started === 0) started = firstDelivery();
      await delivery.ack();
      acked += 1;
      if (acked === N) done(lastAck(started));
    },
    { prefetch: PREFETCH },
  );
  const elapsed = await finished;
  await source.close();
  return elapsed;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function main(): Promise<void> {
  const brokers: Broker[] = [];
  if (BROKERS.includes('amqp')) brokers.push(await amqpBroker());
  if (BROKERS.includes('nats')) brokers.push(await natsBroker());
  const st = stores();
  /** The rounds of each case, by `broker|variant`. */
  const samples = new Map<string, Sample[]>();
  console.log(
    `consumer throughput: N=${N} messages per case (${N_DEFAULTS} on the defaults), ${ROUNDS} rounds, prefetch ${PREFETCH}, concurrency ${CONCURRENCY} (tuned consumer cases)\n`,
  );
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const broker of brokers) {
        const order = variants().sort(() => Math.random() - 0.5);
        for (const variant of order) {
          const { kind } = variant;
          const target = await broker.fill(round, variant.name, variant.messages);
          try {
            let ms: number;
            if (kind === 'raw') {
              ms = await broker.raw(target);
            } else if (kind === 'adapter') {
              ms = await throughAdapter(broker, target);
            } else {
              const store = await st.open(kind);
              try {
                ms = await throughConsumer(broker, target, store, variant);
              } finally {
                await store.close?.();
              }
            }
            const rate = (variant.messages / ms) * 1000;
            const s = sampleOf(rate, variant.messages, broker.server, kind.startsWith('redis'));
            const key = `${broker.name}|${variant.name}`;
            samples.set(key, [...(samples.get(key) ?? []), s]);
            console.log(
              `  round ${round + 1} ${broker.name} ${variant.name}: ${Math.round(rate)} msg/s, ${s.clientUs.toFixed(1)} µs CPU/msg, broker ${s.brokerUs?.toFixed(1) ?? '-'} µs/msg, event loop ${Math.round(s.loopBusyPercent)}% busy, ${s.busyCores.toFixed(2)} of ${CORES} cores busy`,
            );
          } finally {
            await broker.drop(target);
          }
        }
      }
    }
  } finally {
    await st.close();
    for (const broker of brokers) await broker.close();
  }

  const label: Record<Case, string> = {
    raw: 'raw consume + ack (amqplib / nats.js)',
    adapter: 'reprocess source + ack, no runtime',
    memory: 'consumer, memory store',
    sqlite: 'consumer, SQLite store',
    'sqlite-inline': "consumer, SQLite store with checkpoint: 'inline'",
    redis: 'consumer, Redis store',
    'redis-unbatched': 'consumer, Redis store with batch: false',
  };
  const rows: string[][] = [
    [
      'broker',
      'case',
      'median msg/s',
      'best msg/s',
      'median vs raw',
      'CPU µs/msg (median)',
      'event loop busy %',
      'broker CPU µs/msg',
      'Redis CPU µs/msg',
      `cores busy (of ${CORES})`,
    ],
  ];
  for (const broker of brokers) {
    const rawRates = (samples.get(`${broker.name}|raw`) ?? []).map((s) => s.rate);
    const raw = median(rawRates.length > 0 ? rawRates : [0]);
    for (const variant of variants()) {
      const { kind } = variant;
      const rounds = samples.get(`${broker.name}|${variant.name}`) ?? [];
      /** The median of one measure over the rounds that have it, or '-'. */
      const medianOf = (pick: (s: Sample) => number | undefined, digits: number) => {
        const values = rounds
          .map(pick)
          .filter((v): v is number => v !== undefined && !Number.isNaN(v));
        return values.length > 0 ? median(values).toFixed(digits) : '-';
      };
      const r = rounds.length > 0 ? rounds.map((s) => s.rate) : [0];
      rows.push([
        broker.name,
        kind === 'raw' || kind === 'adapter'
          ? label[kind]
          : variant.defaults
            ? `${label[kind]}, defaults (concurrency 1, prefetch 1)`
            : `${label[kind]}, concurrency ${CONCURRENCY}, prefetch ${PREFETCH}`,
        String(Math.round(median(r))),
        String(Math.round(Math.max(...r))),
        kind === 'raw' ? '-' : `${Math.round((median(r) / raw) * 100)}%`,
        medianOf((s) => s.clientUs, 1),
        medianOf((s) => s.loopBusyPercent, 0),
        medianOf((s) => s.brokerUs, 1),
        medianOf((s) => s.redisUs, 1),
        medianOf((s) => s.busyCores, 2),
      ]);
    }
  }
  const widths =
    rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  console.log('');
  for (const [i, row] of rows.entries()) {
    console.log(
      row
        .map((cell, j) => (j >= 2 ? cell.padStart(widths[j] ?? 0) : cell.padEnd(widths[j] ?? 0)))
        .join('  '),
    );
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

await main();
