import { mkdtemp, rm } from 'node:fs/promises';
import type { Clock } from '../clock.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemorySource } from '../consumer/memory-source.js';
import { redrive } from '../consumer/redrive.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import { seededRandom } from '../random.js';
import { createSqliteStore } from '../stores/sqlite/sqlite-store.js';
import { openStore } from '../stores/open-store.js';
import { redactUrl } from '../redact-url.js';
import { DEFAULT_FAULT_RATES, FaultPlan, type FaultKind, type FaultRates } from './faults.js';
import { type PayRequest, startInvoiceApi } from './invoice-api.js';
import { ClientLog, naiveClient, protectedClient } from './payment-client.js';
import { startNaiveWorker, startProtectedWorker } from './receipt-worker.js';
import { createScaledClock } from './scaled-clock.js';
import { EmailService, PaymentProvider } from './world.js';

export type DemoMode = 'unprotected' | 'protected';

export interface DemoOptions {
  /** Payments to make (default 200). */
  invoices?: number;
  seed?: number;
  /** Payments in flight at once (default 8). */
  concurrency?: number;
  rates?: Partial<FaultRates>;
  /** Store of the protected API path (default: SQLite in a temporary directory). */
  store?: string;
  /** How much faster than real time the worker's clock runs (default 1000). */
  workerSpeed?: number;
  onProgress?: (mode: DemoMode, done: number, total: number) => void;
}

/** Everything one run counted. */
export interface ModeResult {
  mode: DemoMode;
  requests: number;
  attempts: number;
  retries: number;
  replaysServed: number;
  inProgress409: number;
  lostResponses: number;
  handlerRuns: number;
  paymentsFailed: number;
  providerCalls: number;
  providerBusy: number;
  quarantined: number;
  redriven: number;
  stillQuarantined: number;
  chargedTwice: number;
  emailsSentTwice: number;
  ordersLost: number;
  duplicateOrders: number;
  receiptsNeverSent: number;
  receiptDeliveries: number;
  workerCrashes: number;
  faults: Record<FaultKind, number>;
  durationMs: number;
  /** ms since the run began, one per HTTP attempt. */
  attemptTimes: number[];
  /** Pause before each retry, ms. */
  retryDelays: number[];
}

export interface DemoResult {
  invoices: number;
  seed: number;
  store: string;
  unprotected: ModeResult;
  protected: ModeResult;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let calm = 0;
  while (Date.now() < end) {
    // Idle twice in a row, a little apart: a redelivery may be scheduled in between.
    calm = condition() ? calm + 1 : 0;
    if (calm >= 3) return;
    await pause(25);
  }
}

async function runMode(
  mode: DemoMode,
  options: Required<Omit<DemoOptions, 'store' | 'onProgress' | 'rates'>> & {
    rates: FaultRates;
    apiStore: IdempotencyStore | undefined;
    workerStore: IdempotencyStore | undefined;
    workerClock: Clock;
    onProgress: DemoOptions['onProgress'];
  },
): Promise<ModeResult> {
  const n = options.invoices;
  const faults = new FaultPlan(options.seed, options.rates);
  const provider = new PaymentProvider({
    from: Math.floor(n * 0.4),
    to: Math.floor(n * 0.48),
    attempts: 2,
    retryAfterMs: 1000,
  });
  const email = new EmailService(faults, { from: Math.floor(n * 0.6), to: Math.floor(n * 0.66) });
  const workerClock = options.workerClock;
  const source = createMemorySource({ name: 'receipts', clock: workerClock });
  const random = seededRandom(options.seed);
  const publishes = new Map<number, number>();
  const publishReceipt = (request: PayRequest) => {
    const k = (publishes.get(request.invoice) ?? 0) + 1;
    publishes.set(request.invoice, k);
    const message = { id: `receipt-${request.invoice}-${k}`, body: request };
    source.publish(message);
    if (faults.hits('duplicateDelivery', request.invoice, k)) source.publish(message);
  };
  const worker =
    mode === 'protected' && options.workerStore
      ? startProtectedWorker({
          source,
          email,
          faults,
          clock: workerClock,
          random,
          store: options.workerStore,
          // At least 300 ms of real time: the worker's clock runs workerSpeed times faster,
          // and a lease of a few real milliseconds would be lost to any pause of the event
          // loop on a busy machine (the message then quarantined, its receipt never sent).
          leaseMs: Math.max(30_000, 300 * options.workerSpeed),
        })
      : startNaiveWorker({ source, email, faults, clock: workerClock, random });
  const api = await startInvoiceApi({
    provider,
    faults,
    publishReceipt,
    ...(mode === 'protected' && options.apiStore ? { store: options.apiStore } : {}),
  });
  const started = performance.now();
  const log = new ClientLog(started);
  const client =
    mode === 'protected'
      ? protectedClient(api.url, faults, log, random)
      : naiveClient(api.url, faults, log);

  const requests: PayRequest[] = Array.from({ length: n }, (_, i) => ({
    invoice: i + 1,
    customer: `cus_${(i * 7919) % 997}`,
    amount: 1000 + ((i * 37) % 9000),
  }));
  let next = 0;
  let done = 0;
  const lane = async () => {
    for (;;) {
      const request = requests[next++];
      if (!request) return;
      await client.pay(request);
      done++;
      options.onProgress?.(mode, done, n);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  // Handlers whose clients gave up still run: their orders and receipts count too (bounded
  // like the other waits of the run).
  let bound: NodeJS.Timeout | undefined;
  await Promise.race([
    api.settled(),
    new Promise<void>((resolve) => {
      bound = setTimeout(resolve, 30_000);
    }),
  ]);
  clearTimeout(bound);

  await until(() => source.isIdle(), 30_000);
  let redriven = 0;
  const quarantined = source.stats().quarantined;
  if (mode === 'protected') {
    // The email provider is fixed: bring back what waited out its outage in quarantine, and
    // whatever else failed on the way, all but the bounced addresses (a redrive would only
    // bounce them again).
    email.recover();
    const codes = new Set<string>();
    for (const message of await source.deadLetters.list()) {
      const code = message.history.lastError.code;
      if (code !== undefined && code !== 'EMAIL_BOUNCED') codes.add(code);
    }
    for (const errorCode of codes) redriven += await redrive(source.deadLetters, { errorCode });
    await until(() => source.isIdle(), 30_000);
  }
  const durationMs = performance.now() - started;
  await worker.stop();
  await api.close();
  await source.close();

  const charged = new Set(provider.charges.map((c) => c.invoice));
  const ordered = new Set(api.orders.orders.map((o) => o.invoice));
  const emailed = new Set(email.sent);
  let ordersLost = 0;
  let receiptsNeverSent = 0;
  for (const invoice of charged) if (!ordered.has(invoice)) ordersLost++;
  for (const invoice of ordered)
    if (!emailed.has(invoice) && !faults.is('badEmail', invoice)) receiptsNeverSent++;
  const stillQuarantined = (await source.deadLetters.list()).length;
  // A bounced address is a property of the invoice, counted once per invoice.
  faults.injected.badEmail = requests.filter((r) => faults.is('badEmail', r.invoice)).length;
  return {
    mode,
    requests: n,
    attempts: log.attempts,
    retries: log.attempts - n,
    replaysServed: log.replays,
    inProgress409: log.inProgress,
    lostResponses: log.lostResponses,
    handlerRuns: api.executions,
    paymentsFailed: log.gaveUp,
    providerCalls: provider.callCount,
    providerBusy: provider.busyAnswers,
    quarantined,
    redriven,
    stillQuarantined,
    chargedTwice: provider.chargedTwice(),
    emailsSentTwice: email.sentTwice(),
    ordersLost,
    duplicateOrders: api.orders.duplicates(),
    receiptsNeverSent,
    receiptDeliveries: worker.log.deliveries,
    workerCrashes: worker.log.crashes,
    faults: { ...faults.injected },
    durationMs,
    attemptTimes: log.attemptTimes,
    retryDelays: log.delays,
  };
}

/**
 * The payment story twice on the same seeded traffic and faults: first the way most code
 * does it (naive retries, no idempotency), then with reprocess.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const invoices = options.invoices ?? 200;
  const seed = options.seed ?? 1;
  const rates = { ...DEFAULT_FAULT_RATES, ...options.rates };
  const dir = await mkdtemp(join(tmpdir(), 'reprocess-demo-'));
  const workerSpeed = options.workerSpeed ?? 1000;
  // The worker path runs on a fast clock so the async profile's real delays (seconds to
  // minutes) pass in milliseconds; its store reads the same clock, so leases agree.
  const workerClock = createScaledClock(workerSpeed);
  let apiStore: IdempotencyStore | undefined;
  let workerStore: IdempotencyStore | undefined;
  try {
    apiStore = options.store
      ? await openStore(options.store)
      : createSqliteStore({ path: join(dir, 'api.sqlite') });
    // A store that does not answer fails here, before both runs, not as every protected
    // payment failing.
    await apiStore.get('0'.repeat(64));
    workerStore = createSqliteStore({ path: join(dir, 'worker.sqlite'), clock: workerClock });
    return await runBoth(options, dir, workerClock, apiStore, workerStore);
  } finally {
    await apiStore?.close?.();
    await workerStore?.close?.();
    // The user's store stays; the temporary directory (the worker's file, and the API's
    // without --store) goes.
    await rm(dir, { recursive: true, force: true });
  }
}

async function runBoth(
  options: DemoOptions,
  dir: string,
  workerClock: Clock,
  apiStore: IdempotencyStore,
  workerStore: IdempotencyStore,
): Promise<DemoResult> {
  const invoices = options.invoices ?? 200;
  const seed = options.seed ?? 1;
  const rates = { ...DEFAULT_FAULT_RATES, ...options.rates };
  const workerSpeed = options.workerSpeed ?? 1000;
  const common = {
    invoices,
    seed,
    concurrency: options.concurrency ?? 8,
    rates,
    workerSpeed,
    workerClock,
    onProgress: options.onProgress,
  };
  const unprotected = await runMode('unprotected', {
    ...common,
    apiStore: undefined,
    workerStore: undefined,
  });
  const protectedRun = await runMode('protected', { ...common, apiStore, workerStore });
  return {
    invoices,
    seed,
    // Shown in the report and the JSON: never with a password.
    store: options.store ? redactUrl(options.store) : `sqlite:${join(dir, 'api.sqlite')}`,
    unprotected,
    protected: protectedRun,
  };
}
