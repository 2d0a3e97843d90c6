import { randomUUID } from 'node:crypto';
import { createRetryingFetch } from '../http/retrying-fetch.js';
import type { Random } from '../random.js';
import { profiles } from '../retry/profiles.js';
import type { FaultPlan } from './faults.js';
import type { PayRequest } from './invoice-api.js';

/** What the client saw, for the tables and the charts. */
export class ClientLog {
  /** One entry per HTTP attempt: ms since the run started. */
  readonly attemptTimes: number[] = [];
  /** Pause before each retry, ms. */
  readonly delays: number[] = [];
  attempts = 0;
  replays = 0;
  inProgress = 0;
  lostResponses = 0;
  succeeded = 0;
  gaveUp = 0;
  constructor(readonly startedAt: number) {}
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A `fetch` that loses a share of responses on the way back: the server did the work, the
 * client sees a reset connection. The decision depends on (invoice, attempt) only.
 */
function lossyFetch(faults: FaultPlan, log: ClientLog): typeof fetch {
  const attemptsOf = new Map<number, number>();
  const endedAt = new Map<number, number>();
  return async (input, init) => {
    const invoice = Number(new Headers(init?.headers).get('x-invoice'));
    const n = (attemptsOf.get(invoice) ?? 0) + 1;
    attemptsOf.set(invoice, n);
    const now = performance.now();
    const previous = endedAt.get(invoice);
    if (previous !== undefined) log.delays.push(now - previous);
    log.attempts++;
    log.attemptTimes.push(now - log.startedAt);
    let response: Response;
    let body: ArrayBuffer;
    try {
      response = await fetch(input, init);
      body = await response.arrayBuffer();
    } finally {
      endedAt.set(invoice, performance.now());
    }
    if (faults.hits('lostResponse', invoice, n)) {
      log.lostResponses++;
      const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      throw new TypeError('fetch failed', { cause: reset });
    }
    if (response.headers.get('idempotent-replayed') === 'true') log.replays++;
    if (response.status === 409) log.inProgress++;
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

export interface PaymentClient {
  pay(request: PayRequest): Promise<boolean>;
}

/** Rounds a user makes: when a payment does not go through, they press Pay again. */
const ROUNDS = 6;

/**
 * The protected client: `retryingFetch` on the sync profile, one Idempotency-Key per
 * payment, kept across its retries and across the user's later rounds.
 */
export function protectedClient(
  url: string,
  faults: FaultPlan,
  log: ClientLog,
  random: Random,
): PaymentClient {
  const send = createRetryingFetch({
    fetch: lossyFetch(faults, log),
    retry: { ...profiles.sync, maxAttempts: 4 },
    deadline: '3s',
    random,
  });
  // Per run: the seeded part repeats from run to run, and a store kept between runs
  // (`--store`) would otherwise replay the last run's payments.
  const run = randomUUID().slice(0, 8);
  return {
    async pay(request) {
      const key = `pay-${run}-${request.invoice}-${Math.floor(random() * 1e12).toString(36)}`;
      for (let round = 1; round <= ROUNDS; round++) {
        try {
          const res = await send(url, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'idempotency-key': key,
              'x-customer': request.customer,
              'x-invoice': String(request.invoice),
            },
            body: JSON.stringify(request),
          });
          if (res.ok) {
            log.succeeded++;
            return true;
          }
        } catch {
          // retries ran out on network errors: the user tries again in a moment
        }
        await pause(100);
      }
      log.gaveUp++;
      return false;
    },
  };
}

/**
 * The unprotected client: what most code does by hand. Up to three immediate tries per
 * round, no key, Retry-After ignored, and the user presses Pay again when it fails.
 */
export function naiveClient(url: string, faults: FaultPlan, log: ClientLog): PaymentClient {
  const send = lossyFetch(faults, log);
  return {
    async pay(request) {
      for (let round = 1; round <= ROUNDS; round++) {
        for (let attempt = 1; attempt <= 3; attempt++) {
          try {
            const controller = new AbortController();
            const timer = setTimeout(() => controller.abort(), 1000);
            const res = await send(url, {
              method: 'POST',
              headers: {
                'content-type': 'application/json',
                'x-customer': request.customer,
                'x-invoice': String(request.invoice),
              },
              body: JSON.stringify(request),
              signal: controller.signal,
            }).finally(() => clearTimeout(timer));
            if (res.ok) {
              log.succeeded++;
              return true;
            }
          } catch {
            // network error or timeout: try again at once
          }
        }
        await pause(100);
      }
      log.gaveUp++;
      return false;
    },
  };
}
