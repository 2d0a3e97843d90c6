import { parseArgs } from 'node:util';
import { idempotencySettingsFromConfig, retryOptionsFromConfig } from '../../config/from-config.js';
import { loadConfig } from '../../config/load-config.js';
import type { BudgetConfig, ReprocessConfig } from '../../config/types.js';
import { redactUrl } from '../../redact-url.js';
import { toMs } from '../../duration.js';
import { isReprocessError } from '../../errors.js';
import { seededRandom } from '../../random.js';
import { baseDelay, delaySequence } from '../../retry/backoff.js';
import { jitterBounds } from '../../retry/jitter.js';
import { type ResolvedRetryOptions, resolveRetryOptions } from '../../retry/resolve-options.js';
import type { CliIo } from '../io.js';

const HELP = `Usage: reprocess check <config> [--json] [--seed <n>] [--samples <n>]

Validates a config file (YAML or JSON) and prints the effective retry policy: every
setting with its default filled in, a table of the delay before each attempt (min, median
and max under the chosen jitter) and the worst-case total time. Exit 0 when the file is
valid, 1 when it is not (every problem is listed), 2 on a usage error.

Options:
  --json         print the summary as JSON
  --seed <n>     seed of the sampling that estimates decorrelated-jitter medians (default 1)
  --samples <n>  number of sampled sequences for that estimate (default 10000)
  -h, --help     show this help`;

/** One row of the delay table: the sleep before `attempt`. */
export interface DelayRow {
  attempt: number;
  min: number;
  median: number;
  max: number;
  /** Sum of `max` up to this row. */
  cumulativeMax: number;
}

/** What `reprocess check` reports, also printed by `--json`. */
export interface CheckReport {
  source: string;
  policy: {
    profile: string | undefined;
    maxAttempts: number;
    backoff: string;
    base: number;
    factor: number;
    cap: number;
    jitter: string;
    deadline: number | undefined;
    attemptTimeout: number | undefined;
    budget: Record<string, string | number> | undefined;
  };
  /** The first {@link SHOWN_ROWS} retries, one row each. */
  delays: DelayRow[];
  /** The retries after those rows, summed up (a max_attempts in the thousands or more). */
  laterAttempts: { from: number; to: number; lastMax: number; cumulativeMax: number } | undefined;
  /** Whether medians come from seeded sampling (decorrelated jitter) rather than a formula. */
  sampledMedians: boolean;
  /** Worst-case time asleep: the sum of max delays, bounded by the deadline. */
  worstCaseSleep: number;
  /** Worst-case total: sleeps plus attempts at their timeout, bounded by the deadline; undefined when unbounded. */
  worstCaseTotal: number | undefined;
  idempotency: Record<string, string | number | boolean> | undefined;
}

/** `reprocess check <config>`. */
export async function run(args: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (error) {
    io.err(`reprocess check: ${error instanceof Error ? error.message : String(error)}\n\n${HELP}`);
    return 2;
  }
  if (parsed.help) {
    io.out(HELP);
    return 0;
  }
  let config: ReprocessConfig;
  try {
    config = await loadConfig(parsed.path);
  } catch (error) {
    if (isReprocessError(error, 'CONFIG_INVALID')) {
      io.err(error.message);
      return 1;
    }
    throw error;
  }
  const report = buildReport(config, parsed.path, parsed.seed, parsed.samples);
  io.out(parsed.json ? JSON.stringify(report, null, 2) : render(report));
  return 0;
}

function parse(args: string[]): {
  path: string;
  json: boolean;
  seed: number;
  samples: number;
  help: boolean;
} {
  const { values, positionals } = parseArgs({
    args,
    options: {
      json: { type: 'boolean' },
      seed: { type: 'string' },
      samples: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  const help = values.help === true;
  if (!help && positionals.length !== 1) {
    throw new Error(
      positionals.length === 0
        ? 'missing <config> path'
        : `expected one <config> path, got ${positionals.length}`,
    );
  }
  const seed = integerFlag(values.seed, 'seed', 1, Number.MIN_SAFE_INTEGER);
  const samples = integerFlag(values.samples, 'samples', 10_000, 1);
  return { path: positionals[0] ?? '', json: values.json === true, seed, samples, help };
}

function integerFlag(
  value: string | undefined,
  name: string,
  fallback: number,
  min: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || value.trim() === '') {
    throw new Error(
      `--${name} must be an integer${min > 0 ? ` >= ${min}` : ''}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/** The report for a validated config. */
export function buildReport(
  config: ReprocessConfig,
  source: string,
  seed = 1,
  samples = 10_000,
): CheckReport {
  const policy = resolveRetryOptions(retryOptionsFromConfig(config.retry_policy));
  const delays = delayRows(policy, seed, samples);
  const retries = policy.maxAttempts - 1;
  const totals = maxDelayTotals(policy.backoff, retries);
  const sumMax = totals.sum;
  const laterAttempts =
    retries > delays.length
      ? {
          from: delays.length + 2,
          to: policy.maxAttempts,
          lastMax: totals.last,
          cumulativeMax: totals.sum,
        }
      : undefined;
  const deadline = policy.deadline;
  const worstCaseSleep = deadline === undefined ? sumMax : Math.min(deadline, sumMax);
  let worstCaseTotal: number | undefined;
  if (policy.attemptTimeout !== undefined) {
    const total = sumMax + policy.maxAttempts * policy.attemptTimeout;
    worstCaseTotal = deadline === undefined ? total : Math.min(deadline, total);
  } else if (deadline !== undefined) {
    // retry() bounds every attempt by the time left before the deadline
    worstCaseTotal = deadline;
  }
  return {
    source,
    policy: {
      profile: config.retry_policy?.profile,
      maxAttempts: policy.maxAttempts,
      backoff: policy.backoff.kind,
      base: policy.backoff.base,
      factor: policy.backoff.factor,
      cap: policy.backoff.cap,
      jitter: policy.backoff.jitter,
      deadline,
      attemptTimeout: policy.attemptTimeout,
      budget: budgetSummary(config.retry_policy?.budget),
    },
    delays,
    laterAttempts,
    sampledMedians: policy.backoff.jitter === 'decorrelated',
    worstCaseSleep,
    worstCaseTotal,
    idempotency: config.idempotency === undefined ? undefined : idempotencySummary(config),
  };
}

/**
 * The sleep before each attempt from the second on. none/full/equal have exact bounds and
 * medians (d, d/2, 3d/4). Decorrelated depends on the walk so far: its bounds are exact
 * (min(cap, base) and min(cap, base * 3^(n+1))), its median is estimated from `samples`
 * seeded sequences.
 */
function delayRows(policy: ResolvedRetryOptions, seed: number, samples: number): DelayRow[] {
  const o = policy.backoff;
  const retries = Math.min(policy.maxAttempts - 1, SHOWN_ROWS);
  const rows: DelayRow[] = [];
  let medians: number[] | undefined;
  if (o.jitter === 'decorrelated' && retries > 0) {
    // At most ten million draws, whatever max_attempts says.
    const runs = Math.max(1, Math.min(samples, Math.floor(10_000_000 / retries)));
    const random = seededRandom(seed);
    const columns: number[][] = Array.from({ length: retries }, () => []);
    for (let s = 0; s < runs; s++) {
      const sequence = delaySequence(o, retries, random);
      for (let i = 0; i < retries; i++) columns[i]?.push(sequence[i] ?? 0);
    }
    medians = columns.map(median);
  }
  let cumulative = 0;
  let prevMax = o.base;
  for (let n = 0; n < retries; n++) {
    const d = baseDelay(o, n);
    const { min, max } = jitterBounds(o.jitter, { d, base: o.base, cap: o.cap, prev: prevMax });
    prevMax = max;
    const mid =
      medians?.[n] ??
      (o.jitter === 'none'
        ? d
        : o.jitter === 'full'
          ? d / 2
          : o.jitter === 'equal'
            ? (3 * d) / 4
            : d);
    cumulative += max;
    rows.push({ attempt: n + 2, min, median: mid, max, cumulativeMax: cumulative });
  }
  return rows;
}

/** Rows shown (and sampled) at most: the delays reach their cap long before. */
const SHOWN_ROWS = 100;

/**
 * The sum of the max delays of `retries` retries, and the last of them, without a row per
 * retry: a max_attempts of a billion is a valid config. Each max only grows, up to the cap,
 * and once one equals the one before it stays so (a delay that stops growing is capped, or
 * zero), so the loop ends there and counts the rest at once. Linear growth can take up to
 * cap/base steps to get there: past a million, the rest is summed in closed form.
 */
function maxDelayTotals(
  o: ResolvedRetryOptions['backoff'],
  retries: number,
): { sum: number; last: number } {
  let sum = 0;
  let prev = o.base;
  let last = Number.NaN;
  for (let n = 0; n < retries; n++) {
    if (n === 1_000_000 && o.kind === 'linear' && o.jitter !== 'decorrelated' && o.base > 0) {
      // Rows n..retries-1: base * (n + 1) until that reaches the cap, then the cap.
      const capped = Math.max(n, Math.ceil(o.cap / o.base) - 1);
      const until = Math.min(retries, capped);
      const triangle = (k: number) => (k * (k + 1)) / 2;
      sum += o.base * (triangle(until) - triangle(n)) + o.cap * (retries - until);
      return { sum, last: baseDelay(o, retries - 1) };
    }
    const { max } = jitterBounds(o.jitter, { d: baseDelay(o, n), base: o.base, cap: o.cap, prev });
    if (max === last) {
      sum += max * (retries - n);
      return { sum, last };
    }
    sum += max;
    prev = max;
    last = max;
  }
  return { sum, last: Number.isNaN(last) ? 0 : last };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? 0)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function budgetSummary(
  budget: BudgetConfig | undefined,
): Record<string, string | number> | undefined {
  if (budget === undefined) return undefined;
  if (budget.type === 'ratio') {
    return {
      type: 'ratio',
      ratio: budget.ratio ?? 0.2,
      minRetriesPerSecond: budget.min_retries_per_second ?? 10,
      window: formatMs(budget.window === undefined ? 10_000 : toMs(budget.window)),
    };
  }
  return {
    type: 'token_bucket',
    capacity: budget.capacity ?? 500,
    retryCost: budget.retry_cost ?? 5,
    timeoutRetryCost: budget.timeout_retry_cost ?? 10,
    successRefund: budget.success_refund ?? 1,
  };
}

function idempotencySummary(config: ReprocessConfig): Record<string, string | number | boolean> {
  const s = idempotencySettingsFromConfig(config.idempotency);
  const store =
    s.store.kind === 'sqlite'
      ? s.store.path === undefined
        ? 'key-value (the embedded SQLite file)'
        : `sqlite file ${s.store.path}${s.store.table === undefined ? '' : `, table ${s.store.table}`}`
      : s.store.kind === 'dynamodb'
        ? `dynamodb table ${s.store.table}`
        : `${s.store.kind} ${redactUrl(s.store.url)}`;
  const out: Record<string, string | number | boolean> = {
    store,
    ttl: formatMs(s.ttl),
    lease: formatMs(s.lease),
    heartbeat: typeof s.heartbeat === 'number' ? formatMs(s.heartbeat) : s.heartbeat,
    onDuplicate: s.onDuplicate,
    onInProgress:
      s.onInProgress === 'reject' ? 'reject' : `wait up to ${formatMs(toMs(s.onInProgress.wait))}`,
    fingerprint:
      s.fingerprint === undefined
        ? 'the whole input'
        : s.fingerprint === false
          ? 'off'
          : Array.isArray(s.fingerprint)
            ? s.fingerprint.join(', ')
            : String(s.fingerprint),
  };
  if (s.key !== undefined) out.keySource = s.key;
  if (s.scope !== undefined) out.scope = s.scope;
  return out;
}

/** 250ms, 1.5s, 2m 30s, 24h. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  // Each unit is chosen after rounding, so 999.996 ms is 1s and 59.999 s is 1m.
  if (Math.round(ms * 100) / 100 < 1000) return `${round(ms)}ms`;
  if (Math.round(ms / 10) / 100 < 60) return `${round(ms / 1000)}s`;
  // Rounded as a whole first, so that 119.6 s is 2m, not 1m 60s.
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    const s = seconds % 60;
    return s === 0 ? `${m}m` : `${m}m ${s}s`;
  }
  const minutes = Math.round(ms / 60_000);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m === 0 ? `${h}h` : `${h}h ${m}m`;
}

function round(n: number): string {
  return String(Math.round(n * 100) / 100);
}

function render(report: CheckReport): string {
  const p = report.policy;
  const lines: string[] = [`${report.source}: valid`, '', 'retry policy (effective)'];
  const settings: [string, string][] = [
    ['profile', p.profile ?? 'none'],
    ['max attempts', String(p.maxAttempts)],
    [
      'backoff',
      `${p.backoff}, base ${formatMs(p.base)}${p.backoff === 'exponential' ? `, factor ${p.factor}` : ''}, cap ${formatMs(p.cap)}`,
    ],
    ['jitter', p.jitter],
    ['deadline', p.deadline === undefined ? 'none' : formatMs(p.deadline)],
    ['attempt timeout', p.attemptTimeout === undefined ? 'none' : formatMs(p.attemptTimeout)],
    [
      'budget',
      p.budget === undefined
        ? 'none'
        : Object.entries(p.budget)
            .map(([k, v]) => (k === 'type' ? String(v) : `${k} ${v}`))
            .join(', '),
    ],
  ];
  lines.push(...table(settings.map(([k, v]) => [`  ${k}`, v])));
  lines.push('');
  if (report.delays.length === 0) {
    lines.push('no retries: max attempts is 1');
  } else {
    lines.push(
      `delay before each attempt (${report.sampledMedians ? 'median estimated by seeded sampling' : 'exact'})`,
    );
    lines.push(
      ...table([
        ['  attempt', 'min', 'median', 'max', 'cumulative max'],
        ...report.delays.map((r) => [
          `  ${r.attempt}`,
          formatMs(r.min),
          formatMs(r.median),
          formatMs(r.max),
          formatMs(r.cumulativeMax),
        ]),
      ]),
    );
    const later = report.laterAttempts;
    if (later !== undefined) {
      lines.push(
        `  attempts ${later.from} to ${later.to}: each at most ${formatMs(later.lastMax)}; cumulative max ${formatMs(later.cumulativeMax)}`,
      );
    }
  }
  lines.push('');
  const sumMax = report.laterAttempts?.cumulativeMax ?? report.delays.at(-1)?.cumulativeMax ?? 0;
  const cut = (raw: number) =>
    p.deadline !== undefined && p.deadline < raw
      ? `; ${formatMs(raw)}, bounded by the ${formatMs(p.deadline)} deadline`
      : '';
  lines.push(
    `worst-case time asleep: ${formatMs(report.worstCaseSleep)} (the sum of the max delays${cut(sumMax)})`,
  );
  if (report.worstCaseTotal === undefined) {
    lines.push(
      'worst-case total time: unbounded (no attempt timeout and no deadline: an attempt may hang)',
    );
  } else if (p.attemptTimeout !== undefined) {
    const raw = sumMax + p.maxAttempts * p.attemptTimeout;
    lines.push(
      `worst-case total time: ${formatMs(report.worstCaseTotal)} (${p.maxAttempts} attempts of at most ${formatMs(p.attemptTimeout)} plus the delays${cut(raw)})`,
    );
  } else {
    lines.push(
      `worst-case total time: ${formatMs(report.worstCaseTotal)} (the deadline: retry() cuts an attempt short at it)`,
    );
  }
  if (report.idempotency !== undefined) {
    lines.push('', 'idempotency (effective)');
    lines.push(...table(Object.entries(report.idempotency).map(([k, v]) => [`  ${k}`, String(v)])));
  }
  return lines.join('\n');
}

function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}
