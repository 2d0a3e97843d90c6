import type { PhaseResult, RunnerFaults } from './consumer-phase.js';
import type { HttpCounts } from './http-load.js';
import type { Check, HttpVerdict, PhaseVerdict } from './invariants.js';
import type { ChaosOptions } from './options.js';
import type { WorkerCounts } from './protocol.js';

/** One phase in the report: what was done to it and what the database says. */
export interface PhaseReport {
  phase: string;
  source: string;
  messages: number;
  publications: number;
  duplicatePublications: number;
  mainSeconds: number;
  drainSeconds: number;
  /** The main stage hit its time limit (see the faults check). */
  mainTimedOut: boolean;
  /** The drain hit the phase's deadline: messages were left undone. */
  timedOut: boolean;
  faults: RunnerFaults;
  workers: WorkerCounts;
  quarantineEvents: number;
  redriven: number;
  verdict: PhaseVerdict;
}

/** The headline figures of a run. */
export interface ChaosTotals {
  messages: number;
  publications: number;
  httpOperations: number;
  httpRequests: number;
  workersKilled: number;
  faults: {
    workerKills: number;
    handlerExceptions: number;
    timeoutsAfterEffect: number;
    duplicatePublications: number;
    brokerClosesByServer: number;
    brokerConnectionsClosedByServer: number;
    brokerCutsAtRelay: number;
    brokerConnectionsCutAtRelay: number;
    storeConnectionKills: number;
    storeConnectionsKilled: number;
    storeOutages: number;
    storeOutageSeconds: number;
    leaseExpiries: number;
    stickyDependencyFailures: number;
    lostHttpResponses: number;
    doubleSubmits: number;
  };
  /** Deliveries of operations that had completed: acked with the stored result. */
  duplicatesDelivered: number;
  /** Deliveries bounced because the same operation was running elsewhere. */
  inProgressBounces: number;
  /** Deliveries bounced because the store did not answer (the handler was not run). */
  storeUnavailableBounces: number;
  /** Consumer replays plus HTTP responses marked Idempotent-Replayed. */
  replaysServed: number;
  quarantined: number;
  quarantinedAtEnd: number;
  redriven: number;
  fencedWrites: number;
  absorbedReexecutions: number;
  duplicateEffects: number;
  lostMessages: number;
}

/** Everything a run found. */
export interface ChaosReport {
  runId: string;
  seed: number;
  store: string;
  idempotency: boolean;
  config: {
    messagesPerPhase: number;
    phases: readonly string[];
    workers: number;
    concurrency: number;
    kills: number;
    leaseMs: number;
    stallMs: number;
    outageMs: number;
    httpOps: number;
    rates: ChaosOptions['rates'];
    amqpClose: string;
  };
  elapsedSeconds: number;
  phases: PhaseReport[];
  http: { counts: HttpCounts; verdict: HttpVerdict };
  unguarded: { withoutLease: number; duringOutage: number } | undefined;
  totals: ChaosTotals;
  checks: Check[];
  /** Every invariant held (for the baseline: nothing was lost; its duplicates are the point). */
  ok: boolean;
}

/** Sums the phases and the HTTP side into the headline figures. */
export function totalsOf(phases: readonly PhaseReport[], http: ChaosReport['http']): ChaosTotals {
  const sum = (f: (p: PhaseReport) => number) => phases.reduce((a, p) => a + f(p), 0);
  const c = http.counts;
  return {
    messages: sum((p) => p.messages),
    publications: sum((p) => p.publications),
    httpOperations: http.verdict.ops,
    httpRequests: c.attempts,
    workersKilled: sum((p) => p.faults.workersKilled),
    faults: {
      workerKills: sum((p) => p.faults.workersKilled),
      handlerExceptions: sum((p) => p.workers.handlerErrors) + c.handlerErrors,
      timeoutsAfterEffect: sum((p) => p.workers.timeoutsAfterEffect) + c.timeoutsAfterEffect,
      duplicatePublications: sum((p) => p.duplicatePublications),
      brokerClosesByServer: sum((p) => p.faults.brokerServerCloses),
      brokerConnectionsClosedByServer: sum((p) => p.faults.brokerServerConnections),
      brokerCutsAtRelay: sum((p) => p.faults.brokerRelayCuts),
      brokerConnectionsCutAtRelay: sum((p) => p.faults.brokerRelayConnections),
      storeConnectionKills: sum((p) => p.faults.storeKills),
      storeConnectionsKilled: sum((p) => p.faults.storeConnectionsKilled),
      storeOutages: sum((p) => p.faults.outages),
      storeOutageSeconds: round1(sum((p) => p.faults.outageMs) / 1000),
      leaseExpiries: sum((p) => p.workers.stalls),
      stickyDependencyFailures: sum((p) => p.workers.dependencyDown),
      lostHttpResponses: c.lostResponses,
      doubleSubmits: c.doubleSubmits,
    },
    duplicatesDelivered: sum((p) => p.workers.replayed),
    inProgressBounces: sum((p) => p.workers.retriedInProgress),
    storeUnavailableBounces: sum((p) => p.workers.retriedStoreUnavailable),
    replaysServed: sum((p) => p.workers.replayed) + c.replays,
    quarantined: sum((p) => p.quarantineEvents),
    quarantinedAtEnd: sum((p) => p.verdict.quarantined),
    redriven: sum((p) => p.redriven),
    fencedWrites: sum((p) => p.workers.fenced) + c.fenced,
    absorbedReexecutions: sum((p) => p.workers.absorbed) + c.absorbed,
    duplicateEffects: sum((p) => p.verdict.duplicateEffects) + http.verdict.duplicateEffects,
    lostMessages: sum((p) => p.verdict.lost),
  };
}

/** Builds a phase's report entry. */
export function phaseReport(
  result: PhaseResult,
  source: string,
  verdict: PhaseVerdict,
): PhaseReport {
  return {
    phase: result.phase,
    source,
    messages: result.messages,
    publications: result.publications,
    duplicatePublications: result.duplicatePublications,
    mainSeconds: round1(result.mainMs / 1000),
    drainSeconds: round1(result.drainMs / 1000),
    mainTimedOut: result.mainTimedOut,
    timedOut: result.timedOut,
    faults: result.faults,
    workers: result.counts,
    quarantineEvents: result.quarantineNotes.length,
    redriven: result.redriven,
    verdict,
  };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
