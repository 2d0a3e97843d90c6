import type pg from 'pg';
import type { QuarantinedMessage } from '../src/consumer/types.js';
import { quoteSchema } from './effects-db.js';
import type { HttpOp, HttpOpResult } from './http-load.js';
import { STEPS } from './order-handler.js';
import { orderIdOfBody } from './phase-broker.js';
import type { OrderBody } from './plan.js';

/**
 * Effects are stamped with the time the begin that guards them was ANSWERED `acquired` (not
 * when it was called: a call may wait in the store's batcher, or in the client's offline
 * queue, and reach the store only after it is back, which is a guarded run). While the store
 * is unreachable no answer can come from it, so an acquisition answered during an outage is a
 * store that let an operation run unguarded. The first moments of an outage are left out:
 * an answer already on its way when the relay cut the connection may still be read.
 */
export const ANSWER_SLACK_MS = 500;

/** A stretch of time when the idempotency store was unreachable (epoch ms). */
export interface OutageWindow {
  phase: string;
  start: number;
  end: number;
}

/** What the checker needs about one broker phase. */
export interface PhaseFacts {
  phase: string;
  /** The queue or stream: every quarantine history must name it. */
  source: string;
  messages: readonly OrderBody[];
  /** The dead-letter destination at the end, read without taking anything. */
  deadLetters: readonly QuarantinedMessage[];
  /** The histories carry the order id as idempotency key (false for the baseline's random keys). */
  keyedByOrder: boolean;
}

/** What the database and the dead-letter queue say about one phase. */
export interface PhaseVerdict {
  phase: string;
  messages: number;
  /** Messages with both effects. */
  done: number;
  /** Messages not done that are in quarantine with their history. */
  quarantined: number;
  /** Of those, the ones that are not poison (a redrive did not finish). */
  quarantinedNotPoison: number;
  /** Rows beyond the first per (message, step). */
  duplicateEffects: number;
  /** Messages neither done nor quarantined (some may have one effect of two). */
  lost: number;
  lostIds: string[];
  /** Dead letters whose history is missing or wrong. */
  badHistories: string[];
  /** Effects of messages the plan does not know. */
  strayEffects: number;
}

/** The HTTP operations against the database. */
export interface HttpVerdict {
  ops: number;
  executedOnce: number;
  duplicateEffects: number;
  /** Operations without their effect. */
  missing: number;
  /** Operations whose client never got its 201. */
  failed: number;
}

/** One invariant and whether it held. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /**
   * The baseline (no idempotency) is expected to break this one: that is what it shows. Its
   * failure is printed, and does not fail a baseline run.
   */
  brokenByBaseline?: boolean;
}

interface EffectGroup {
  phase: string;
  message_id: string;
  step: string;
  n: number;
}

/** Reads every effect group (phase, message, step, rows) of the run. */
export async function readEffectGroups(db: pg.Pool, schema: string): Promise<EffectGroup[]> {
  const result = await db.query(
    `SELECT phase, message_id, step, count(*)::int AS n
     FROM ${quoteSchema(schema)}.effects GROUP BY phase, message_id, step`,
  );
  return result.rows as EffectGroup[];
}

/** Checks one phase: every message done exactly once per step, or quarantined with history. */
export function checkPhase(facts: PhaseFacts, groups: readonly EffectGroup[]): PhaseVerdict {
  const rows = new Map<string, number>();
  let strayEffects = 0;
  const known = new Set(facts.messages.map((m) => m.id));
  for (const g of groups) {
    if (g.phase !== facts.phase) continue;
    if (!known.has(g.message_id) || !(STEPS as readonly string[]).includes(g.step)) {
      strayEffects += g.n;
      continue;
    }
    rows.set(`${g.message_id}\u0000${g.step}`, g.n);
  }

  const badHistories: string[] = [];
  const inQuarantine = new Set<string>();
  for (const item of facts.deadLetters) {
    const problem = historyProblem(item, facts.source, facts.keyedByOrder);
    const id = orderIdOfBody(item.body);
    if (problem !== undefined) badHistories.push(`${id ?? item.id}: ${problem}`);
    else if (id !== undefined) inQuarantine.add(id);
  }

  let done = 0;
  let quarantined = 0;
  let quarantinedNotPoison = 0;
  let duplicateEffects = 0;
  const lostIds: string[] = [];
  for (const message of facts.messages) {
    const counts = STEPS.map((step) => rows.get(`${message.id}\u0000${step}`) ?? 0);
    for (const n of counts) duplicateEffects += Math.max(0, n - 1);
    if (counts.every((n) => n >= 1)) done += 1;
    else if (inQuarantine.has(message.id)) {
      quarantined += 1;
      if (message.kind !== 'poison') quarantinedNotPoison += 1;
    } else lostIds.push(message.id);
  }
  return {
    phase: facts.phase,
    messages: facts.messages.length,
    done,
    quarantined,
    quarantinedNotPoison,
    duplicateEffects,
    lost: lostIds.length,
    lostIds: lostIds.slice(0, 20),
    badHistories: badHistories.slice(0, 20),
    strayEffects,
  };
}

/** Checks the HTTP operations: one effect each, and every client got its answer. */
export function checkHttp(
  ops: readonly HttpOp[],
  results: readonly HttpOpResult[],
  groups: readonly EffectGroup[],
): HttpVerdict {
  const rows = new Map<string, number>();
  for (const g of groups)
    if (g.phase === 'http' && g.step === 'charge') rows.set(g.message_id, g.n);
  const succeeded = new Map(results.map((r) => [r.key, r.succeeded]));
  let executedOnce = 0;
  let duplicateEffects = 0;
  let missing = 0;
  let failed = 0;
  for (const op of ops) {
    const n = rows.get(op.key) ?? 0;
    if (n === 1) executedOnce += 1;
    if (n === 0) missing += 1;
    duplicateEffects += Math.max(0, n - 1);
    if (succeeded.get(op.key) !== true) failed += 1;
  }
  return { ops: ops.length, executedOnce, duplicateEffects, missing, failed };
}

/**
 * Effects written by runs that were not guarded: with idempotency, every row must carry the
 * time its guarding begin was answered, and none may have been answered while the store was
 * away (see ANSWER_SLACK_MS).
 */
export async function countUnguarded(
  db: pg.Pool,
  schema: string,
  outages: readonly OutageWindow[],
): Promise<{ withoutLease: number; duringOutage: number }> {
  const s = quoteSchema(schema);
  const without = await db.query(
    `SELECT count(*)::int AS n FROM ${s}.effects WHERE guarded_since IS NULL`,
  );
  let duringOutage = 0;
  for (const w of outages) {
    const start = w.start + ANSWER_SLACK_MS;
    if (w.end <= start) continue;
    const r = await db.query(
      `SELECT count(*)::int AS n FROM ${s}.effects WHERE guarded_since >= $1 AND guarded_since < $2`,
      [start, w.end],
    );
    duringOutage += Number((r.rows[0] as { n: number }).n);
  }
  return { withoutLease: Number((without.rows[0] as { n: number }).n), duringOutage };
}

const REASONS = new Set([
  'non_retryable',
  'attempts_exhausted',
  'max_age',
  'poison',
  'key_missing',
]);

/** Why a dead letter's history is not acceptable, or undefined when it is. */
function historyProblem(
  item: QuarantinedMessage,
  source: string,
  keyedByOrder: boolean,
): string | undefined {
  const h = item.history;
  if (!REASONS.has(h.reason)) return `reason ${JSON.stringify(h.reason)}`;
  if (!Number.isInteger(h.attempts) || h.attempts < 1) return `attempts ${h.attempts}`;
  if (h.source !== source) return `source ${JSON.stringify(h.source)}, not ${source}`;
  if (!h.lastError?.message) return 'no last error';
  if (!(h.firstFailureAt <= h.lastFailureAt && h.lastFailureAt <= h.quarantinedAt)) {
    return 'failure times out of order';
  }
  const id = orderIdOfBody(item.body);
  if (id === undefined) return 'body is not an order';
  if (keyedByOrder && h.idempotencyKey !== id) {
    return `idempotency key ${JSON.stringify(h.idempotencyKey)}`;
  }
  return undefined;
}
