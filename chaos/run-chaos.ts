import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type Random, seededRandom } from '../src/random.js';
import { createAmqpBroker } from './broker-amqp.js';
import { createNatsBroker } from './broker-nats.js';
import { type PhaseResult, runPhase } from './consumer-phase.js';
import { createEffectWriter, createEffectsSchema, dropSchema } from './effects-db.js';
import { share } from './fault-plan.js';
import {
  type HttpOp,
  type HttpOpResult,
  OpGate,
  runHttpClients,
  startOrderApi,
  zeroHttpCounts,
} from './http-load.js';
import {
  type Check,
  type OutageWindow,
  checkHttp,
  checkPhase,
  countUnguarded,
  readEffectGroups,
} from './invariants.js';
import type { ChaosOptions } from './options.js';
import type { PhaseBroker } from './phase-broker.js';
import { type PhasePlan, planPhase } from './plan.js';
import { type ChaosReport, type PhaseReport, phaseReport, totalsOf } from './report.js';
import { type GuardedStore, guardStore, openChaosStore } from './store-access.js';
import { type StoreInfra, createStoreInfra } from './store-infra.js';
import { WorkerLauncher } from './worker-launcher.js';

/** Time kept at the end of the run for the checks and the cleanup. */
const RESERVE_MS = 15_000;

/**
 * Runs the whole chaos scenario (see docs/readme/chaos.md) and returns its report. Every
 * name the run creates (schemas, Redis keys, queues, streams, connection names) carries a
 * run id of its own, and everything is removed at the end unless `options.keep`.
 */
export async function runChaos(
  options: ChaosOptions,
  log: (line: string) => void,
  signal?: AbortSignal,
): Promise<ChaosReport> {
  // Unique even for runs started in one process at the same millisecond (the tests do).
  const runId = `c${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const started = Date.now();
  const deadline = started + options.durationMs;
  const random = seededRandom(options.seed);
  const admin = new pg.Pool({
    connectionString: options.urls.postgres,
    max: 4,
    application_name: `chaos-${runId}-admin`,
  });
  admin.on('error', () => {});
  const effectsSchema = `chaos_${runId}`;
  const outages: OutageWindow[] = [];
  const http = zeroHttpCounts();
  const closers: Array<() => Promise<unknown>> = [];
  const stopClients = new AbortController();
  let store: StoreInfra | undefined;
  // Worker processes start loading now, while the run sets up.
  const launcher = new WorkerLauncher(options.workers + 1, options.workers + options.kills);
  launcher.prewarm();
  log(
    `chaos run ${runId}: seed ${options.seed}, store ${options.store}, ${options.idempotency ? 'idempotency on' : 'BASELINE (no idempotency)'}`,
  );

  try {
    await createEffectsSchema(admin, effectsSchema);
    store = await createStoreInfra(options.store, options.urls, runId, admin);

    // The HTTP API and its clients run alongside the broker phases.
    const apiEffects = new pg.Pool({
      connectionString: options.urls.postgres,
      max: 6,
      application_name: `chaos-${runId}-effects-api`,
    });
    apiEffects.on('error', () => {});
    closers.push(() => apiEffects.end());
    let guard: GuardedStore | undefined;
    if (options.idempotency) {
      const opened = guardStore(await openChaosStore(store.spec('http')));
      guard = opened;
      closers.unshift(async () => opened.store.close?.());
    }
    let httpCalm = false;
    const api = await startOrderApi({
      guard,
      leaseMs: options.leaseMs,
      effects: createEffectWriter(apiEffects, effectsSchema),
      random: derive(random),
      rates: options.rates,
      isCalm: () => httpCalm,
      counts: http,
    });
    closers.unshift(() => api.close());
    const ops = planHttpOps(options.httpOps, runId, options.rates.doubleSubmit, random);
    const gate = new OpGate();
    const clients: Promise<HttpOpResult[]> = runHttpClients({
      url: api.url,
      ops,
      concurrency: 8,
      lostResponseRate: options.rates.lostResponse,
      random: derive(random),
      gate,
      deadline: deadline - RESERVE_MS,
      counts: http,
      signal: stopClients.signal,
    });

    const kills = share(options.kills, options.phases.length);
    const opsPerPhase = share(ops.length, options.phases.length);
    const phases: Array<{ result: PhaseResult; broker: PhaseBroker; plan: PhasePlan }> = [];
    let opsBefore = 0;
    for (const [i, phase] of options.phases.entries()) {
      if (signal?.aborted) break;
      const plan = planPhase(phase, options.messages, options.stalls, options.rates, random);
      const broker =
        phase === 'amqp'
          ? await createAmqpBroker(options.urls.amqp, runId)
          : await createNatsBroker(options.urls.nats, runId);
      const base = opsBefore;
      const mine = opsPerPhase[i] ?? 0;
      try {
        const phaseDeadline =
          Date.now() + (deadline - RESERVE_MS - Date.now()) / (options.phases.length - i);
        const result = await runPhase({
          options,
          runId,
          plan,
          broker,
          store,
          admin,
          effectsSchema,
          kills: kills[i] ?? 0,
          random: derive(random),
          deadline: phaseDeadline,
          log,
          // HTTP operations are released as the phase progresses, so they meet its faults.
          onProgress: (p) => gate.allow(base + Math.floor(Math.min(1, p / 0.85) * mine)),
          outages,
          aborted: () => signal?.aborted === true,
          launcher,
        });
        phases.push({ result, broker, plan });
      } finally {
        gate.allow(base + mine);
        await broker.close({ keep: options.keep }).catch((error: unknown) => {
          log(`could not remove the ${phase} queues/streams: ${String(error)}`);
        });
      }
      opsBefore += mine;
    }
    gate.allow(ops.length);
    httpCalm = true;
    const httpResults = await clients;
    log(`HTTP: ${httpResults.length} operations done`);

    // The checks, against the database and the dead-letter queues.
    const groups = await readEffectGroups(admin, effectsSchema);
    const reports: PhaseReport[] = phases.map(({ result, broker, plan }) =>
      phaseReport(
        result,
        broker.source,
        checkPhase(
          {
            phase: result.phase,
            source: broker.source,
            messages: plan.messages,
            deadLetters: result.deadLetters,
            keyedByOrder: options.idempotency,
          },
          groups,
        ),
      ),
    );
    const httpVerdict = checkHttp(ops, httpResults, groups);
    const unguarded = options.idempotency
      ? await countUnguarded(admin, effectsSchema, outages)
      : undefined;
    const httpReport = { counts: http, verdict: httpVerdict };
    const totals = totalsOf(reports, httpReport);
    const checks = buildChecks(options, reports, httpReport, unguarded, totals);
    const ok = checks.every((c) => c.ok || (!options.idempotency && c.brokenByBaseline === true));
    return {
      runId,
      seed: options.seed,
      store: options.store,
      idempotency: options.idempotency,
      config: {
        messagesPerPhase: options.messages,
        phases: options.phases,
        workers: options.workers,
        concurrency: options.concurrency,
        kills: options.kills,
        leaseMs: options.leaseMs,
        stallMs: options.stallMs,
        outageMs: options.outageMs,
        httpOps: options.httpOps,
        rates: options.rates,
        amqpClose: options.amqpClose,
      },
      elapsedSeconds: Math.round((Date.now() - started) / 100) / 10,
      phases: reports,
      http: httpReport,
      unguarded,
      totals,
      checks,
      ok,
    };
  } finally {
    // When a phase failed, nobody awaits the clients: they must not go on against a closed API.
    stopClients.abort();
    launcher.close();
    for (const close of closers) await close().catch(() => undefined);
    await store?.close({ keep: options.keep }).catch((error: unknown) => {
      log(`could not clean up the store: ${String(error)}`);
    });
    if (!options.keep) {
      await dropSchema(admin, effectsSchema).catch((error: unknown) => {
        log(`could not drop schema ${effectsSchema}: ${String(error)}`);
      });
    } else {
      log(`kept: schema ${effectsSchema} (and the run's store data, queues and streams)`);
    }
    await admin.end().catch(() => undefined);
  }
}

/** The invariants, and whether the run did inject what it claims. */
function buildChecks(
  options: ChaosOptions,
  phases: readonly PhaseReport[],
  http: ChaosReport['http'],
  unguarded: ChaosReport['unguarded'],
  totals: ChaosReport['totals'],
): Check[] {
  const checks: Check[] = [];
  checks.push({
    name: 'no effect exists twice',
    ok: totals.duplicateEffects === 0,
    detail: `${totals.duplicateEffects} duplicate effect row(s)`,
    brokenByBaseline: true,
  });
  checks.push({
    name: 'no message is lost',
    ok: totals.lostMessages === 0 && phases.every((p) => !p.timedOut),
    detail: `${totals.lostMessages} lost${phases.some((p) => p.timedOut) ? '; a phase ran out of time before every message was done' : ''}`,
  });
  const bad = phases.flatMap((p) => p.verdict.badHistories);
  const stray = phases.reduce((a, p) => a + p.verdict.strayEffects, 0);
  checks.push({
    name: 'every message has both effects, or is in quarantine with its history',
    ok: totals.lostMessages === 0 && bad.length === 0 && stray === 0,
    detail: `${phases.reduce((a, p) => a + p.verdict.done, 0)} done, ${totals.quarantinedAtEnd} quarantined with history, ${bad.length} bad history, ${stray} stray effect row(s)`,
  });
  const httpOnce = http.verdict.executedOnce === http.verdict.ops;
  checks.push({
    name: 'every HTTP operation executed once',
    ok: httpOnce,
    detail: `${http.verdict.executedOnce}/${http.verdict.ops} once, ${http.verdict.duplicateEffects} duplicate(s), ${http.verdict.missing} missing`,
    brokenByBaseline: true,
  });
  checks.push({
    name: 'every HTTP client got its answer',
    ok: http.verdict.failed === 0,
    detail: `${http.verdict.ops - http.verdict.failed}/${http.verdict.ops} answered 201`,
  });
  if (unguarded !== undefined) {
    checks.push({
      name: 'no handler ran unguarded (every effect under a lease; none begun while the store was down)',
      ok: unguarded.withoutLease === 0 && unguarded.duringOutage === 0,
      detail: `${unguarded.withoutLease} effect(s) without a lease, ${unguarded.duringOutage} guarded by a begin answered during an outage`,
    });
  }
  const f = totals.faults;
  const outagesWanted = options.outageMs > 0 ? phases.length : 0;
  const cutsWanted = options.brokerCuts * phases.length;
  const killsWanted = phases.length === options.phases.length ? options.kills : 0;
  checks.push({
    name: 'the faults were injected as asked',
    ok:
      f.workerKills >= killsWanted &&
      f.storeOutages >= outagesWanted &&
      f.brokerClosesByServer + f.brokerCutsAtRelay >= cutsWanted &&
      f.storeConnectionKills >= options.storeKills * phases.length,
    detail: `kills ${f.workerKills}/${killsWanted}, outages ${f.storeOutages}/${outagesWanted}, broker closes ${f.brokerClosesByServer + f.brokerCutsAtRelay}/${cutsWanted}, store kills ${f.storeConnectionKills}/${options.storeKills * phases.length}, stalls ${f.leaseExpiries}`,
  });
  const crashes = phases.flatMap((p) => p.faults.workerCrashes);
  checks.push({
    name: 'workers died only when killed',
    ok: crashes.length === 0,
    detail: crashes.length === 0 ? 'no crash' : crashes.slice(0, 3).join(' | '),
  });
  return checks;
}

/** The HTTP operations: one key each, some double-submitted. */
function planHttpOps(count: number, runId: string, doubleRate: number, random: Random): HttpOp[] {
  return Array.from({ length: count }, (_, i) => ({
    key: `h-${runId}-${String(i).padStart(6, '0')}`,
    amount: 1 + Math.floor(random() * 500),
    double: random() < doubleRate,
  }));
}

/** A new seeded generator drawn from `random`, so each user of randomness has its own stream. */
function derive(random: Random): Random {
  return seededRandom(Math.floor(random() * 2 ** 32));
}
