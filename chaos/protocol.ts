import type { FaultRates } from './options.js';
import type { StoreSpec } from './store-access.js';

/*
 * What the runner and a worker process (chaos/worker.ts) say to each other over the IPC
 * channel of `child_process.spawn(..., { stdio: [..., 'ipc'] })`.
 */

/** How a worker reaches its broker: always through the phase's relay. */
export type WorkerBrokerConfig =
  | {
      kind: 'amqp';
      url: string;
      queue: string;
      delayTiers: readonly string[];
      connectionName: string;
    }
  | {
      kind: 'nats';
      servers: string;
      stream: string;
      durable: string;
      ackWait: string;
      connectionName: string;
    };

/** Everything a worker needs, sent once it is warm (`{ type: 'config' }`). */
export interface WorkerConfig {
  runId: string;
  /** `amqp`/`nats`: the phase, also the `phase` column of its effects. */
  phase: string;
  /** `w<slot>.<generation>`: a restarted worker gets the next generation. */
  name: string;
  seed: number;
  /** False: the baseline (a fresh key per delivery on an in-process store, plain inserts). */
  idempotency: boolean;
  broker: WorkerBrokerConfig;
  /** The idempotency store (through the store relay); unused by the baseline. */
  store: StoreSpec;
  /** Straight to PostgreSQL: the business database the effects go to. */
  effectsUrl: string;
  effectsSchema: string;
  leaseMs: number;
  stallMs: number;
  concurrency: number;
  prefetch: number;
  maxAttempts: number;
  rates: Pick<FaultRates, 'handlerError' | 'timeoutAfterEffect'>;
  /** Faults off and the sticky dependency healed (the run is draining). */
  calm: boolean;
}

/** What a worker counts; sent as deltas. */
export interface WorkerCounts {
  /** Handler invocations (guarded runs that started). */
  runs: number;
  handlerErrors: number;
  timeoutsAfterEffect: number;
  /** Sticky messages that failed because their dependency was down. */
  dependencyDown: number;
  /** Handlers that stalled past their lease. */
  stalls: number;
  /** Effect writes refused by the fence (stale token). */
  fenced: number;
  /** Effect re-executions that found their row already written. */
  absorbed: number;
  written: number;
  acked: number;
  /** Deliveries of completed operations: acked with the stored result, handler not run. */
  replayed: number;
  retriedFailure: number;
  retriedInProgress: number;
  retriedStoreUnavailable: number;
  quarantined: number;
  settleFailures: number;
  released: number;
}

export const ZERO_COUNTS: WorkerCounts = {
  runs: 0,
  handlerErrors: 0,
  timeoutsAfterEffect: 0,
  dependencyDown: 0,
  stalls: 0,
  fenced: 0,
  absorbed: 0,
  written: 0,
  acked: 0,
  replayed: 0,
  retriedFailure: 0,
  retriedInProgress: 0,
  retriedStoreUnavailable: 0,
  quarantined: 0,
  settleFailures: 0,
  released: 0,
};

/** A quarantine the worker saw confirmed. */
export interface QuarantineNote {
  /** The idempotency key: the message id of the run. */
  key: string;
  reason: string;
  code: string | undefined;
}

/** Worker to runner. */
export type WorkerReport =
  /** Started and loaded, waiting for its config. */
  | { type: 'warm' }
  /** Consuming. */
  | { type: 'ready' }
  | { type: 'counts'; counts: Partial<WorkerCounts>; quarantined: QuarantineNote[] }
  | { type: 'fatal'; message: string }
  /** Handlers stalled past their lease right now (the runner spares this worker from kills). */
  | { type: 'stalling'; active: number };

/** Runner to worker. */
export type RunnerCommand =
  | { type: 'config'; config: WorkerConfig }
  | { type: 'calm' }
  | { type: 'stop' };

/** Adds `delta` into `total`. */
export function addCounts(total: WorkerCounts, delta: Partial<WorkerCounts>): void {
  for (const [name, value] of Object.entries(delta) as [keyof WorkerCounts, number][]) {
    if (typeof value === 'number') total[name] += value;
  }
}
