import type { Clock } from '../clock.js';
import { type Consumer, createConsumer } from '../consumer/consumer.js';
import type { MemorySource } from '../consumer/memory-source.js';
import type { Delivery } from '../consumer/types.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { Random } from '../random.js';
import { profiles } from '../retry/profiles.js';
import type { FaultPlan } from './faults.js';
import type { PayRequest } from './invoice-api.js';
import type { EmailService } from './world.js';

/** What the worker side did, for the tables. */
export interface WorkerLog {
  deliveries: number;
  crashes: number;
  /** Messages the naive worker dropped after its tries (receipts never sent). */
  dropped: number;
}

export interface ReceiptWorker {
  log: WorkerLog;
  stop(): Promise<void>;
}

const forever = () => new Promise<never>(() => undefined);

/**
 * A store whose process "died": once frozen, no call reaches the real store again (no
 * heartbeat, no release), exactly like a worker killed mid-handler. Its lease then ends on
 * its own and another worker takes the operation over.
 */
function freezable(store: IdempotencyStore): { store: IdempotencyStore; freeze(): void } {
  let frozen = false;
  const wrap =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      frozen ? forever() : fn(...args);
  const s = store;
  return {
    freeze: () => {
      frozen = true;
    },
    store: {
      name: s.name,
      begin: wrap(s.begin.bind(s)),
      complete: wrap(s.complete.bind(s)),
      fail: wrap(s.fail.bind(s)),
      release: wrap(s.release.bind(s)),
      heartbeat: wrap(s.heartbeat.bind(s)),
      saveStep: wrap(s.saveStep.bind(s)),
      get: wrap(s.get.bind(s)),
      delete: wrap(s.delete.bind(s)),
      list: wrap(s.list.bind(s)),
      purgeExpired: wrap(s.purgeExpired.bind(s)),
    },
  };
}

export interface WorkerOptions {
  source: MemorySource;
  email: EmailService;
  faults: FaultPlan;
  clock: Clock;
  random: Random;
}

/**
 * The protected worker: a consumer on the async profile (patient retries, then quarantine),
 * the email sent in a step with a derived key, one idempotent operation per invoice. A crash
 * kills the "process" (its store calls stop) and a fresh one starts, as a supervisor would.
 */
export function startProtectedWorker(
  options: WorkerOptions & { store: IdempotencyStore; leaseMs: number },
): ReceiptWorker {
  const log: WorkerLog = { deliveries: 0, crashes: 0, dropped: 0 };
  let current: Consumer | undefined;
  let stopped = false;

  const incarnation = () => {
    const frozen = freezable(options.store);
    // Once this "process" died, none of its handlers may act again.
    let dead = false;
    const consumer: Consumer = createConsumer<PayRequest>({
      source: options.source,
      concurrency: 4,
      clock: options.clock,
      random: options.random,
      key: (m) => `receipt-${(m.body as PayRequest).invoice}`,
      idempotency: {
        store: frozen.store,
        clock: options.clock,
        lease: options.leaseMs,
        operation: 'send-receipt',
      },
      retry: profiles.async,
      handler: async (message, ctx) => {
        log.deliveries++;
        const invoice = message.body.invoice;
        await ctx.step('email', async () => {
          await options.email.send(invoice, ctx.keyFor('email'));
          if (dead) return forever();
          if (options.faults.hits('workerCrash', invoice, message.attempt)) {
            dead = true;
            log.crashes++;
            frozen.freeze();
            options.source.crash();
            void consumer.stop({ timeoutMs: 0 });
            if (!stopped) setImmediate(incarnation);
            return forever();
          }
          return true;
        });
      },
    });
    current = consumer;
    void consumer.start();
  };

  incarnation();
  return {
    log,
    async stop() {
      stopped = true;
      await current?.stop({ timeoutMs: 1000 });
    },
  };
}

/**
 * The unprotected worker: take a message, send the email, acknowledge. A failure is tried
 * again at once, up to three deliveries, then dropped; a crash after the send redelivers it.
 */
export function startNaiveWorker(options: WorkerOptions): ReceiptWorker {
  const log: WorkerLog = { deliveries: 0, crashes: 0, dropped: 0 };
  const decoder = new TextDecoder();
  // Each restart is a new "process"; handlers of a dead one never act again.
  let generation = 0;
  let stopped = false;
  const handle = async (delivery: Delivery): Promise<void> => {
    const born = generation;
    log.deliveries++;
    const { invoice } = JSON.parse(decoder.decode(delivery.body)) as PayRequest;
    try {
      await options.email.send(invoice);
    } catch {
      if ((delivery.deliveryCount ?? 1) < 3) await delivery.retryLater(0);
      else {
        log.dropped++;
        await delivery.ack();
      }
      return;
    }
    if (born !== generation) return forever();
    if (options.faults.hits('workerCrash', invoice, delivery.deliveryCount ?? 1)) {
      generation++;
      log.crashes++;
      options.source.crash();
      setImmediate(() => {
        // Stopped meanwhile: no new "process" (it would crash and restart for good).
        if (!stopped) void options.source.start(handle, { prefetch: 4 });
      });
      return forever();
    }
    await delivery.ack();
  };
  void options.source.start(handle, { prefetch: 4 });
  return {
    log,
    stop: () => {
      stopped = true;
      return options.source.stop();
    },
  };
}
