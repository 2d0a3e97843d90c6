import { InvalidArgumentError } from '../errors.js';
import { seededRandom } from '../random.js';
import { baseDelay } from '../retry/backoff.js';
import { applyJitter } from '../retry/jitter.js';
import { EventQueue } from './event-queue.js';
import type { SimStrategy } from './strategy.js';

/**
 * The classic contention study: `clients` all start at once and each updates one shared row
 * with optimistic concurrency. An attempt reads at `s` and writes at `s + opMs`; the write
 * succeeds unless another client's write succeeded in between, in which case the client
 * backs off and tries again. Without jitter, clients that collided retry in lockstep and
 * collide again; jitter spreads them out.
 */
export interface ContentionScenario {
  clients: number;
  /** Time between the read and the conditional write, ms. */
  opMs: number;
  seed: number;
  /** Spread of the first attempts, ms (0: all at once). */
  startSpreadMs?: number;
}

export interface ContentionResult {
  strategy: string;
  clients: number;
  /** Attempts made by all clients. */
  calls: number;
  /** Clients that gave up before writing. */
  gaveUp: number;
  /** Time until the last client finished, ms. */
  completionMs: number;
}

export function simulateContention(
  scenario: ContentionScenario,
  strategy: SimStrategy,
): ContentionResult {
  if (!Number.isInteger(scenario.clients) || scenario.clients < 1 || scenario.clients > 1_000_000) {
    throw new InvalidArgumentError(
      `scenario.clients must be an integer 1..1,000,000, got ${scenario.clients}`,
    );
  }
  if (!(scenario.opMs > 0)) throw new InvalidArgumentError('scenario.opMs must be > 0');
  const random = seededRandom(scenario.seed);
  const { backoff, maxAttempts } = strategy;
  const n = scenario.clients;
  const attemptStart = new Float64Array(n);
  const attempts = new Uint32Array(n);
  const prev = new Float64Array(n).fill(backoff.base);
  const queue = new EventQueue(n);
  const spread = scenario.startSpreadMs ?? 0;
  for (let c = 0; c < n; c++) {
    const s = spread > 0 ? random() * spread : 0;
    attemptStart[c] = s;
    queue.push(s + scenario.opMs, c);
  }
  let lastWrite = Number.NEGATIVE_INFINITY;
  let calls = 0;
  let gaveUp = 0;
  let completion = 0;
  while (queue.length > 0) {
    const t = queue.peekTime();
    const c = queue.pop();
    calls++;
    const attempt = (attempts[c] as number) + 1;
    attempts[c] = attempt;
    if (lastWrite <= (attemptStart[c] as number)) {
      lastWrite = t;
      completion = Math.max(completion, t);
      continue;
    }
    if (attempt >= maxAttempts) {
      gaveUp++;
      completion = Math.max(completion, t);
      continue;
    }
    const d = baseDelay(backoff, attempt - 1);
    const delay = applyJitter(
      backoff.jitter,
      { d, base: backoff.base, cap: backoff.cap, prev: prev[c] as number },
      random,
    );
    prev[c] = delay;
    attemptStart[c] = t + delay;
    queue.push(t + delay + scenario.opMs, c);
  }
  return { strategy: strategy.name, clients: n, calls, gaveUp, completionMs: completion };
}
