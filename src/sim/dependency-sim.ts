import type { Clock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import { seededRandom } from '../random.js';
import { baseDelay } from '../retry/backoff.js';
import { applyJitter } from '../retry/jitter.js';
import { EventQueue } from './event-queue.js';
import { GrowableSeries, quantileSorted } from './series.js';
import type { SimStrategy } from './strategy.js';

/**
 * Many clients calling one dependency of finite capacity that fails for a while.
 *
 *   arrivals (Poisson, ratePerSecond) ──► call ──► ok, or fails ──► backoff ──► call ...
 *                                          │
 *   the dependency serves at most capacityPerSecond calls; calls beyond that in a bucket
 *   fail (overload), and every call in the outage window fails.
 *
 *   time ─────────[ outage ]──────────────────────────────►
 *                           └─ recovery: first moment after which every bucket for
 *                              `recoveryWindowMs` fails at most 5% of its calls
 */
export interface DependencyScenario {
  /** Logical requests made by all clients together. */
  requests: number;
  /** Arrival rate of new requests, per second. */
  ratePerSecond: number;
  /** Calls per second the dependency can serve. */
  capacityPerSecond: number;
  /** Time a call takes before its outcome is known, ms. */
  latencyMs: number;
  /** Every call in [startMs, endMs) fails. */
  outage?: { startMs: number; endMs: number };
  /** Arrival rate multiplied by `factor` in [startMs, endMs): overload without an outage. */
  surge?: { startMs: number; endMs: number; factor: number };
  /** Width of a load bucket, ms (default 100). */
  bucketMs?: number;
  recoveryWindowMs?: number;
  seed: number;
}

export interface DependencyResult {
  strategy: string;
  requests: number;
  calls: number;
  /** calls / requests. */
  amplification: number;
  succeeded: number;
  successRate: number;
  gaveUp: { attempts: number; budget: number; deadline: number; notRetried: number };
  p50Ms: number;
  p99Ms: number;
  /** Time from the end of the fault until the dependency is healthy again; null if never. */
  recoveryMs: number | null;
  /** Highest calls per second in one bucket, over capacity. */
  peakLoad: number;
  bucketMs: number;
  /** Calls per second in each bucket. */
  load: number[];
  /** Failed calls per second in each bucket. */
  failures: number[];
  /** Up to 5,000 retry delays drawn, ms. */
  delaySample: number[];
}

class SimClock implements Clock {
  time = 0;
  now(): number {
    return this.time;
  }
  setTimer(): () => void {
    throw new Error('the simulation clock has no timers');
  }
}

const RETRYABLE = Object.freeze({ retryable: true, code: 'SIM_DEPENDENCY_FAILED' });

export function validateScenario(s: DependencyScenario): void {
  const positive: Array<keyof DependencyScenario> = [
    'requests',
    'ratePerSecond',
    'capacityPerSecond',
  ];
  for (const field of positive) {
    const v = s[field];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw new InvalidArgumentError(
        `scenario.${field} must be a finite number > 0, got ${String(v)}`,
      );
    }
  }
  if (!(s.latencyMs >= 0 && s.latencyMs <= MAX_LATENCY_MS)) {
    throw new InvalidArgumentError(
      `scenario.latencyMs must be from 0 to ${MAX_LATENCY_MS} (an hour), got ${String(s.latencyMs)}`,
    );
  }
  if (!Number.isInteger(s.requests) || s.requests > 50_000_000) {
    throw new InvalidArgumentError('scenario.requests must be an integer <= 50,000,000');
  }
  for (const w of [s.outage, s.surge]) {
    if (w && !(w.endMs > w.startMs && w.startMs >= 0)) {
      throw new InvalidArgumentError('a fault window needs 0 <= startMs < endMs');
    }
  }
  // The run keeps a series per 100 ms bucket of simulated time: a scenario spread over years
  // (a rate of one request a month) would need more memory than any machine has.
  const arrivalsMs = (s.requests / s.ratePerSecond) * 1000;
  if (!(arrivalsMs <= MAX_SPAN_MS)) {
    throw new InvalidArgumentError(
      `the requests arrive over about ${Math.round(arrivalsMs / 1000)} s of simulated time (requests / rate); at most ${MAX_SPAN_MS / 1000} s: raise the rate or lower the requests`,
    );
  }
}

/** Longest time the arrivals may span (a day): the series stay under a million buckets. */
const MAX_SPAN_MS = 86_400_000;
/** Longest latency of one call. */
const MAX_LATENCY_MS = 3_600_000;

/** Runs one strategy through the scenario. Deterministic for `scenario.seed`. */
export function simulateDependency(
  scenario: DependencyScenario,
  strategy: SimStrategy,
): DependencyResult {
  validateScenario(scenario);
  const random = seededRandom(scenario.seed);
  const arrivalRandom = seededRandom(scenario.seed ^ 0x5bd1e995);
  const bucketMs = scenario.bucketMs ?? 100;
  const capPerBucket = (scenario.capacityPerSecond * bucketMs) / 1000;
  // Calls one bucket serves: the capacity spread over buckets, so that a fraction per bucket
  // (9 calls/s is 0.9 a bucket) adds up to whole calls (9 buckets in 10 serve one), instead of
  // every bucket serving none.
  const capacityOf = (bucket: number) =>
    Math.floor((bucket + 1) * capPerBucket) - Math.floor(bucket * capPerBucket);
  const perSecond = 1000 / bucketMs;
  const n = scenario.requests;
  const clock = new SimClock();
  const budget = strategy.budget?.(clock);
  const { backoff, maxAttempts, deadlineMs } = strategy;
  const outageStart = scenario.outage?.startMs ?? Number.POSITIVE_INFINITY;
  const outageEnd = scenario.outage?.endMs ?? Number.NEGATIVE_INFINITY;
  const surge = scenario.surge;

  const start = new Float64Array(n);
  // 32 bits: a max_attempts past 65,535 is a valid config, and 16 bits would wrap under it.
  const attempts = new Uint32Array(n);
  const prev = new Float64Array(n).fill(backoff.base);
  const durations = new Float64Array(n);
  const load = new GrowableSeries(1024);
  const failures = new GrowableSeries(1024);
  const queue = new EventQueue(4096);
  const delaySample: number[] = [];
  const gaveUp = { attempts: 0, budget: 0, deadline: 0, notRetried: 0 };

  let calls = 0;
  let succeeded = 0;
  let arrived = 0;
  let nextArrival = 0;
  const arrivalGap = (t: number) => {
    const rate =
      surge && t >= surge.startMs && t < surge.endMs
        ? scenario.ratePerSecond * surge.factor
        : scenario.ratePerSecond;
    return (-Math.log(1 - arrivalRandom()) * 1000) / rate;
  };
  nextArrival = arrivalGap(0);

  while (arrived < n || queue.length > 0) {
    let id: number;
    let t: number;
    if (arrived < n && nextArrival <= queue.peekTime()) {
      id = arrived++;
      t = nextArrival;
      start[id] = t;
      nextArrival = t + arrivalGap(t);
      clock.time = t;
      budget?.onRequest();
    } else {
      t = queue.peekTime();
      id = queue.pop();
      clock.time = t;
    }
    calls++;
    const attempt = (attempts[id] as number) + 1;
    attempts[id] = attempt;
    const bucket = Math.floor(t / bucketMs);
    load.add(bucket, 1);
    const failed = (t >= outageStart && t < outageEnd) || load.get(bucket) > capacityOf(bucket);
    if (!failed) {
      succeeded++;
      durations[id] = t + scenario.latencyMs - (start[id] as number);
      budget?.onSuccess();
      continue;
    }
    failures.add(bucket, 1);
    durations[id] = Number.POSITIVE_INFINITY;
    if (attempt >= maxAttempts) {
      if (maxAttempts === 1) gaveUp.notRetried++;
      else gaveUp.attempts++;
      continue;
    }
    const d = baseDelay(backoff, attempt - 1);
    const delay = applyJitter(
      backoff.jitter,
      { d, base: backoff.base, cap: backoff.cap, prev: prev[id] as number },
      random,
    );
    prev[id] = delay;
    const next = t + scenario.latencyMs + delay;
    if (next - (start[id] as number) > deadlineMs) {
      gaveUp.deadline++;
      continue;
    }
    if (budget && !budget.tryAcquireRetry(RETRYABLE)) {
      gaveUp.budget++;
      continue;
    }
    if (delaySample.length < 5000) delaySample.push(delay);
    queue.push(next, id);
  }

  const finished = durations.filter((d) => Number.isFinite(d)).sort();
  const buckets = load.length;
  const loadArr = load.toArray(buckets).map((c) => c * perSecond);
  const failArr = failures.toArray(buckets).map((c) => c * perSecond);
  let peak = 0;
  for (const c of loadArr) if (c > peak) peak = c;
  const faultEnd = Math.max(outageEnd, surge?.endMs ?? Number.NEGATIVE_INFINITY);
  return {
    strategy: strategy.name,
    requests: n,
    calls,
    amplification: calls / n,
    succeeded,
    successRate: succeeded / n,
    gaveUp,
    p50Ms: quantileSorted(finished, 0.5),
    p99Ms: quantileSorted(finished, 0.99),
    recoveryMs: Number.isFinite(faultEnd)
      ? recoveryTime(loadArr, failArr, bucketMs, faultEnd, scenario.recoveryWindowMs ?? 1000)
      : 0,
    peakLoad: peak / scenario.capacityPerSecond,
    bucketMs,
    load: loadArr,
    failures: failArr,
    delaySample,
  };
}

/**
 * The first time after `faultEnd` from which every bucket within `windowMs` fails at most 5%
 * of its calls, minus `faultEnd`. A bucket without calls counts as healthy. Calls that end
 * inside a healthy stretch shorter than the window (or end before the fault does) recovered
 * from the start of that stretch: nothing failed after it. Null when the last calls still
 * failed.
 */
function recoveryTime(
  load: number[],
  failures: number[],
  bucketMs: number,
  faultEnd: number,
  windowMs: number,
): number | null {
  const first = Math.ceil(faultEnd / bucketMs);
  const span = Math.max(1, Math.round(windowMs / bucketMs));
  let healthyRun = 0;
  for (let b = first; b < load.length; b++) {
    const l = load[b] as number;
    const healthy = l === 0 || (failures[b] as number) <= 0.05 * l;
    healthyRun = healthy ? healthyRun + 1 : 0;
    if (healthyRun >= span) return Math.max(0, (b - span + 1) * bucketMs - faultEnd);
  }
  // The calls ended inside a healthy stretch (or before `first`): nothing failed after it.
  const end = Math.max(first, load.length);
  if (healthyRun > 0 || first >= load.length) {
    return Math.max(0, (end - healthyRun) * bucketMs - faultEnd);
  }
  return null;
}
