import type pg from 'pg';
import { redrive } from '../src/consumer/redrive.js';
import type { QuarantinedMessage } from '../src/consumer/types.js';
import type { Random } from '../src/random.js';
import { quoteSchema } from './effects-db.js';
import { type Trigger, planTriggers } from './fault-plan.js';
import { FaultCode } from './injected-fault.js';
import type { OutageWindow } from './invariants.js';
import type { ChaosOptions } from './options.js';
import { type PhaseBroker, orderIdOfBody } from './phase-broker.js';
import type { PhasePlan } from './plan.js';
import type { QuarantineNote, WorkerCounts } from './protocol.js';
import type { StoreInfra } from './store-infra.js';
import { startTcpRelay } from './tcp-relay.js';
import type { WorkerLauncher } from './worker-launcher.js';
import { WorkerPool } from './worker-pool.js';

/** What one phase needs from the run. */
export interface PhaseContext {
  options: ChaosOptions;
  runId: string;
  plan: PhasePlan;
  broker: PhaseBroker;
  store: StoreInfra;
  /** Straight to PostgreSQL: progress queries. */
  admin: pg.Pool;
  effectsSchema: string;
  /** Worker kills in this phase. */
  kills: number;
  random: Random;
  /** The phase must be over by then (epoch ms). */
  deadline: number;
  log(line: string): void;
  /** Told the phase's progress (0..1) as it goes. */
  onProgress(fraction: number): void;
  /** Outage windows are appended here as they happen. */
  outages: OutageWindow[];
  /** True once the run was interrupted (SIGINT). */
  aborted(): boolean;
  /** Where worker processes come from (warm spares). */
  launcher: WorkerLauncher;
}

/** The faults injected from outside the workers, as counted by the runner. */
export interface RunnerFaults {
  workersKilled: number;
  workersRestarted: number;
  workerCrashes: string[];
  /** Broker closes by RabbitMQ itself (rabbitmqctl close_connection). */
  brokerServerCloses: number;
  /** Connections those closed. */
  brokerServerConnections: number;
  /** Cuts of every connection through the broker relay. */
  brokerRelayCuts: number;
  brokerRelayConnections: number;
  storeKills: number;
  storeConnectionsKilled: number;
  outages: number;
  outageMs: number;
}

/** What one phase did. */
export interface PhaseResult {
  phase: string;
  messages: number;
  publications: number;
  duplicatePublications: number;
  counts: WorkerCounts;
  quarantineNotes: QuarantineNote[];
  faults: RunnerFaults;
  redriven: number;
  deadLetters: QuarantinedMessage[];
  mainMs: number;
  drainMs: number;
  /** The main stage hit its time limit (faults may be missing; messages went on in calm). */
  mainTimedOut: boolean;
  /** The drain hit the phase's deadline: messages were left undone. */
  timedOut: boolean;
}

/**
 * One broker phase:
 *
 *   declare ─ start workers ─ publish ──► main: faults fire as progress passes their marks,
 *   until every message is done or quarantined ──► calm: faults off, sticky dependency healed
 *   ──► redrive every quarantined message that is not poison ──► drain until every message
 *   but the poison ones is done ──► stop workers ─ read the dead-letter queue
 */
export async function runPhase(ctx: PhaseContext): Promise<PhaseResult> {
  const { options, plan, broker, store, log } = ctx;
  const phase = plan.phase;
  const started = Date.now();
  const faults: RunnerFaults = {
    workersKilled: 0,
    workersRestarted: 0,
    workerCrashes: [],
    brokerServerCloses: 0,
    brokerServerConnections: 0,
    brokerRelayCuts: 0,
    brokerRelayConnections: 0,
    storeKills: 0,
    storeConnectionsKilled: 0,
    outages: 0,
    outageMs: 0,
  };

  await broker.declare();
  const relay = await startTcpRelay(broker.port);
  const pool = new WorkerPool(
    ctx.launcher,
    (index, generation, calm) => {
      const name = `w${index}.${generation}`;
      return {
        runId: ctx.runId,
        phase,
        name,
        seed: options.seed,
        idempotency: options.idempotency,
        broker: broker.workerConfig(relay.port, name),
        store: store.spec(`${phase}-${name}`),
        effectsUrl: options.urls.postgres,
        effectsSchema: ctx.effectsSchema,
        leaseMs: options.leaseMs,
        stallMs: options.stallMs,
        concurrency: options.concurrency,
        prefetch: options.concurrency * 2,
        maxAttempts: 8,
        rates: {
          handlerError: options.rates.handlerError,
          timeoutAfterEffect: options.rates.timeoutAfterEffect,
        },
        calm,
      };
    },
    (line) => log(`[${phase}] ${line}`),
  );

  const total = plan.messages.length;
  const poison = new Set(plan.messages.filter((m) => m.kind === 'poison').map((m) => m.id));
  const triggers = planTriggers(
    {
      kills: ctx.kills,
      brokerCuts: options.brokerCuts,
      storeKills: options.storeKills,
      outage: options.outageMs > 0,
    },
    ctx.random,
  );
  const inFlight = new Set<Promise<void>>();
  const track = (work: Promise<void>) => {
    const tracked = work.catch((error: unknown) =>
      log(`[${phase}] fault failed: ${String(error)}`),
    );
    inFlight.add(tracked);
    void tracked.finally(() => inFlight.delete(tracked));
  };
  let useServerClose = options.amqpClose === 'rabbitmqctl' && broker.closeFromServer !== undefined;
  let serverCloseRunning = false;

  function fire(trigger: Trigger): boolean {
    switch (trigger.kind) {
      case 'kill': {
        const name = pool.kill(ctx.random);
        if (name === undefined) return false;
        log(`[${phase}] SIGKILL worker ${name}`);
        return true;
      }
      case 'brokerCut': {
        const closeFromServer = broker.closeFromServer;
        if (useServerClose && closeFromServer !== undefined && !serverCloseRunning) {
          serverCloseRunning = true;
          track(
            closeFromServer()
              .then((n) => {
                faults.brokerServerCloses += 1;
                faults.brokerServerConnections += n;
                log(`[${phase}] RabbitMQ closed ${n} worker connection(s) (rabbitmqctl)`);
              })
              .catch((error: unknown) => {
                useServerClose = false;
                log(
                  `[${phase}] rabbitmqctl unusable (${String(error)}); cutting through the relay`,
                );
                cutRelay();
              })
              .finally(() => {
                serverCloseRunning = false;
              }),
          );
        } else {
          cutRelay();
        }
        return true;
      }
      case 'storeKill':
        track(
          store.killConnections().then((n) => {
            faults.storeKills += 1;
            faults.storeConnectionsKilled += n;
            log(`[${phase}] killed ${n} idempotency store connection(s) on the server`);
          }),
        );
        return true;
      case 'outage':
        track(outage());
        return true;
    }
  }

  function cutRelay(): void {
    const n = relay.cut();
    faults.brokerRelayCuts += 1;
    faults.brokerRelayConnections += n;
    log(`[${phase}] cut ${n} broker connection(s) at the relay`);
  }

  async function outage(): Promise<void> {
    await store.relay.down();
    const start = Date.now();
    log(`[${phase}] idempotency store DOWN for ${options.outageMs} ms`);
    await new Promise((r) => setTimeout(r, options.outageMs));
    const end = Date.now();
    await store.relay.up();
    ctx.outages.push({ phase, start, end });
    faults.outages += 1;
    faults.outageMs += end - start;
    log(`[${phase}] idempotency store back`);
  }

  const notes: QuarantineNote[] = [];
  let mainTimedOut = false;
  let timedOut = false;
  let mainMs = 0;
  let drainMs = 0;
  let redriven = 0;
  try {
    pool.start(options.workers);
    let publishError: unknown;
    let published = false;
    const publishing = broker.publish(plan.publications).then(
      () => {
        published = true;
        log(`[${phase}] published ${plan.publications.length} (${plan.duplicates} duplicates)`);
      },
      (error: unknown) => {
        publishError = error;
      },
    );

    // Main stage: until every message is done or quarantined, with the faults firing.
    // The main stage's clock starts once a worker consumes: starting node with tsx takes
    // seconds on a loaded machine, and that is not the system under test.
    await pool.whenReady(1, started + (ctx.deadline - started) / 2);
    const readyAt = Date.now();
    const mainDeadline = readyAt + (ctx.deadline - readyAt) * 0.75;
    const quarantined = new Set<string>();
    let pending = [...triggers];
    let lastSettled = -1;
    let lastChange = Date.now();
    let lastListing = 0;
    let lastReport = Date.now();
    for (;;) {
      if (publishError !== undefined) throw publishError;
      for (const note of pool.quarantined.splice(0)) {
        notes.push(note);
        quarantined.add(note.key);
      }
      const done = await doneCount(ctx.admin, ctx.effectsSchema, phase);
      const doneQuarantined = await doneAmong(ctx.admin, ctx.effectsSchema, phase, [
        ...quarantined,
      ]);
      const settled = done + quarantined.size - doneQuarantined;
      const progress = settled / total;
      ctx.onProgress(progress);
      if (Date.now() - lastReport >= 5000) {
        lastReport = Date.now();
        log(
          `[${phase}] ${done} done, ${quarantined.size} quarantined of ${total}; ${pool.ready}/${options.workers} workers up`,
        );
      }
      pending = pending.filter((t) => !(t.at <= progress && fire(t)));
      if (settled >= total && published && pending.length === 0) break;
      if (settled !== lastSettled) {
        lastSettled = settled;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > 4000 && Date.now() - lastListing > 4000) {
        // A quarantine note can die with a killed worker: the dead-letter queue is the truth.
        lastListing = Date.now();
        for (const item of await broker.listDeadLetters()) {
          const id = orderIdOfBody(item.body);
          if (id !== undefined) quarantined.add(id);
        }
      }
      if (Date.now() >= mainDeadline || ctx.aborted()) {
        mainTimedOut = true;
        log(
          `[${phase}] main stage hit its time limit with ${total - settled} message(s) unsettled and ${pending.length} fault(s) not fired (${pending.map((t) => t.kind).join(', ')})`,
        );
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    await publishing;
    await Promise.all(inFlight);
    if (store.relay.isDown) await store.relay.up();
    mainMs = Date.now() - started;
    log(`[${phase}] main stage done in ${(mainMs / 1000).toFixed(1)} s; draining`);

    // Calm: the faults are over and the sticky dependency is back. Redrive, then drain.
    pool.setCalm();
    const drainStart = Date.now();
    redriven = await redriveAllButPoison(broker);
    if (redriven > 0) log(`[${phase}] redrove ${redriven} quarantined message(s)`);
    let lastDone = -1;
    let doneAt = Date.now();
    for (;;) {
      const done = await doneCount(ctx.admin, ctx.effectsSchema, phase);
      if (done >= total - poison.size) break;
      if (done !== lastDone) {
        lastDone = done;
        doneAt = Date.now();
      } else if (Date.now() - doneAt > 5000) {
        // Stuck: something was quarantined again after the redrive; send it back too.
        doneAt = Date.now();
        const moved = await redriveAllButPoison(broker);
        redriven += moved;
        if (moved > 0) log(`[${phase}] redrove ${moved} more`);
      }
      if (Date.now() >= ctx.deadline || ctx.aborted()) {
        timedOut = true;
        log(
          `[${phase}] drain hit its time limit with ${total - poison.size - done} message(s) not done`,
        );
        break;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    drainMs = Date.now() - drainStart;
  } finally {
    // Also when the phase failed: no worker process may outlive it.
    await pool.stop();
    await relay.close();
  }
  faults.workersKilled = pool.killed;
  faults.workersRestarted = pool.restarted;
  faults.workerCrashes = pool.crashes;
  const deadLetters = await broker.listDeadLetters();
  return {
    phase,
    messages: total,
    publications: plan.publications.length,
    duplicatePublications: plan.duplicates,
    counts: pool.counts,
    quarantineNotes: [...notes, ...pool.quarantined],
    faults,
    redriven,
    deadLetters,
    mainMs,
    drainMs,
    mainTimedOut,
    timedOut,
  };
}

/**
 * Redrives every quarantined message except poison ones, one error code at a time (the
 * filter an operator would use), or by key when a message has no code.
 */
async function redriveAllButPoison(broker: PhaseBroker): Promise<number> {
  const items = await broker.listDeadLetters();
  const codes = new Set<string>();
  const keys = new Set<string>();
  for (const item of items) {
    const code = item.history.lastError.code;
    if (code === FaultCode.POISON_ORDER) continue;
    if (code !== undefined) codes.add(code);
    else if (item.history.idempotencyKey !== undefined) keys.add(item.history.idempotencyKey);
  }
  let moved = 0;
  for (const errorCode of codes) moved += await redrive(broker.deadLetters, { errorCode });
  for (const idempotencyKey of keys) moved += await redrive(broker.deadLetters, { idempotencyKey });
  return moved;
}

/** Messages of `phase` whose last step has its effect. */
async function doneCount(db: pg.Pool, schema: string, phase: string): Promise<number> {
  const r = await db.query(
    `SELECT count(DISTINCT message_id)::int AS n FROM ${quoteSchema(schema)}.effects WHERE phase = $1 AND step = 'ship'`,
    [phase],
  );
  return Number((r.rows[0] as { n: number }).n);
}

/** How many of `ids` are done. */
async function doneAmong(
  db: pg.Pool,
  schema: string,
  phase: string,
  ids: string[],
): Promise<number> {
  if (ids.length === 0) return 0;
  const r = await db.query(
    `SELECT count(DISTINCT message_id)::int AS n FROM ${quoteSchema(schema)}.effects
     WHERE phase = $1 AND step = 'ship' AND message_id = ANY($2)`,
    [phase, ids],
  );
  return Number((r.rows[0] as { n: number }).n);
}
