/**
 * One worker process of the chaos run, started by the runner with
 * `node --import tsx chaos/worker.ts` and an IPC channel. It loads, says it is warm, waits
 * for its config, then consumes the phase's queue or stream through the broker relay with the
 * order handler, reports what it counts every 250 ms, and lives until the runner says stop,
 * or kills it with SIGKILL.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createConsumer } from '../src/consumer/consumer.js';
import type { ConsumerEvent } from '../src/consumer/events.js';
import type { MessageSource } from '../src/consumer/types.js';
import { InvalidArgumentError } from '../src/errors.js';
import { seededRandom } from '../src/random.js';
import { createMemoryStore } from '../src/stores/memory-store.js';
import { createEffectWriter } from './effects-db.js';
import { createOrderHandler } from './order-handler.js';
import { orderIdOfDelivery } from './phase-broker.js';
import type { OrderBody } from './plan.js';
import type {
  QuarantineNote,
  RunnerCommand,
  WorkerConfig,
  WorkerCounts,
  WorkerReport,
} from './protocol.js';
import { type GuardedStore, guardStore, openChaosStore } from './store-access.js';

if (typeof process.send !== 'function') {
  throw new InvalidArgumentError(
    'chaos/worker.ts is started by the chaos runner (node --import tsx chaos/worker.ts, with an IPC channel)',
  );
}

function send(report: WorkerReport): void {
  if (process.connected) process.send?.(report);
}

let pending: Partial<WorkerCounts> = {};
let notes: QuarantineNote[] = [];
function count(name: keyof WorkerCounts, by = 1): void {
  pending[name] = (pending[name] ?? 0) + by;
  // Rare and telling: sent at once, before the runner may hear that this worker can be killed.
  if (name === 'stalls' || name === 'fenced') flush();
}
function flush(): void {
  if (Object.keys(pending).length === 0 && notes.length === 0) return;
  send({ type: 'counts', counts: pending, quarantined: notes });
  pending = {};
  notes = [];
}
setInterval(flush, 250);

function fatal(error: unknown): never {
  flush();
  send({
    type: 'fatal',
    message: error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
  process.exit(1);
}
process.on('unhandledRejection', fatal);
process.on('uncaughtException', fatal);
// The runner went away: nobody will stop us.
process.on('disconnect', () => process.exit(0));

/** Waits for the next config, after saying so ('warm': loaded, idle). */
function nextConfig(): Promise<WorkerConfig> {
  return new Promise<WorkerConfig>((resolve) => {
    const onMessage = (message: RunnerCommand) => {
      if (message.type === 'config') {
        process.off('message', onMessage);
        resolve(message.config);
      } else if (message.type === 'stop') {
        process.exit(0);
      }
    };
    process.on('message', onMessage);
    send({ type: 'warm' });
  });
}

/**
 * One run of this process as a worker: consumes with `config` until the runner says stop,
 * then closes everything it opened. The process then goes back to warm and may serve the
 * next phase (a process the run killed never comes back, of course).
 */
async function work(config: WorkerConfig): Promise<void> {
  let calm = config.calm;
  let stalling = 0;
  const random = seededRandom((config.seed ^ hash(config.name)) >>> 0);

  const effectsPool = new pg.Pool({
    connectionString: config.effectsUrl,
    max: 6,
    application_name: `chaos-${config.runId}-effects`,
  });
  effectsPool.on('error', () => {});

  const guard: GuardedStore | undefined = config.idempotency
    ? guardStore(await openChaosStore(config.store))
    : undefined;

  const handler = createOrderHandler({
    phase: config.phase,
    worker: config.name,
    random,
    rates: config.rates,
    stallMs: config.stallMs,
    isCalm: () => calm,
    count: (name) => count(name),
    effects: createEffectWriter(effectsPool, config.effectsSchema),
    guard,
    onStall(delta) {
      stalling += delta;
      send({ type: 'stalling', active: stalling });
    },
  });

  const source = await createSource(config);
  const consumer = createConsumer<OrderBody>({
    source,
    handler,
    // The baseline: a fresh key for every delivery on a store of its own is idempotency off.
    key: config.idempotency ? 'headers.idempotency-key' : () => randomUUID(),
    idempotency: guard
      ? { store: guard.store, operation: 'chaos-order', lease: config.leaseMs }
      : { store: createMemoryStore(), operation: 'chaos-order', fingerprint: false },
    retry: {
      maxAttempts: config.maxAttempts,
      backoff: 'exponential',
      base: '100ms',
      cap: '1s',
      jitter: 'full',
    },
    validate: checkOrder,
    concurrency: config.concurrency,
    prefetch: config.prefetch,
    touchIntervalMs: 1000,
    random,
    onEvent,
  });

  const stopped = new Promise<void>((resolve) => {
    const onMessage = (message: RunnerCommand) => {
      if (message.type === 'calm') calm = true;
      if (message.type === 'stop') {
        process.off('message', onMessage);
        resolve();
      }
    };
    process.on('message', onMessage);
  });

  // Starting fails when the broker relay was cut at that moment: try again for a while.
  for (let attempt = 1; ; attempt++) {
    try {
      await consumer.start();
      break;
    } catch (error) {
      if (attempt >= 20) fatal(error);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  send({ type: 'ready' });

  await stopped;
  await consumer.stop({ timeoutMs: 5000 }).catch(() => undefined);
  await source.close().catch(() => undefined);
  await guard?.store.close?.().catch(() => undefined);
  await effectsPool.end().catch(() => undefined);
  flush();
}

function onEvent(event: ConsumerEvent): void {
  switch (event.type) {
    case 'acked':
      count('acked');
      if (event.replayed) count('replayed');
      break;
    case 'retry_scheduled':
      if (event.reason === 'in_progress') count('retriedInProgress');
      else if (event.reason === 'store_unavailable') count('retriedStoreUnavailable');
      else count('retriedFailure');
      break;
    case 'quarantined':
      count('quarantined');
      notes.push({
        // The order id, not the idempotency key: the baseline's keys are random per delivery.
        key: orderIdOfDelivery(event.id),
        reason: event.history.reason,
        code: event.history.lastError.code,
      });
      break;
    case 'settle_failed':
      if (event.action !== 'touch') count('settleFailures');
      break;
    case 'released':
      count('released');
      break;
  }
}

// Only the adapter of this phase is loaded: a worker restarted under load starts sooner.
async function createSource(config: WorkerConfig): Promise<MessageSource> {
  const broker = config.broker;
  if (broker.kind === 'amqp') {
    const { createAmqpSource } = await import('../src/consumer/amqp/index.js');
    return createAmqpSource({
      url: broker.url,
      queue: broker.queue,
      delayTiers: [...broker.delayTiers],
      connectionName: broker.connectionName,
      declare: false,
    });
  }
  const { createJetStreamSource } = await import('../src/consumer/nats/index.js');
  return createJetStreamSource({
    servers: broker.servers,
    stream: broker.stream,
    durable: broker.durable,
    ackWait: broker.ackWait,
    connectionName: broker.connectionName,
    declare: false,
  });
}

// Warm: loaded and waiting. The runner keeps spares like this, so a killed worker's
// replacement starts consuming at once instead of after node and tsx have started.
for (;;) await work(await nextConfig());

function checkOrder(body: unknown): OrderBody {
  const b = body as Partial<OrderBody> | null;
  if (
    typeof b !== 'object' ||
    b === null ||
    typeof b.id !== 'string' ||
    (b.kind !== 'normal' && b.kind !== 'poison' && b.kind !== 'sticky') ||
    typeof b.stall !== 'boolean' ||
    typeof b.amount !== 'number'
  ) {
    throw new InvalidArgumentError('not an order: { id, kind, stall, amount }');
  }
  return b as OrderBody;
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}
