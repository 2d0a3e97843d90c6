import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { causeChain } from '../../cause-chain.js';
import { demoReport, demoSummary, demoTable } from '../../demo/demo-report.js';
import { DEFAULT_FAULT_RATES, type FaultRates } from '../../demo/faults.js';
import type { DemoMode, ModeResult, runDemo } from '../../demo/run-demo.js';
import { StoreUnavailableError, isReprocessError } from '../../errors.js';
import { renderReport } from '../../report/html-report.js';
import { outPathProblem, writeReport } from '../files.js';
import type { CliIo } from '../io.js';

const RATE_FLAGS: Record<string, keyof FaultRates> = {
  'order-timeout': 'orderTimeout',
  'lost-response': 'lostResponse',
  'slow-order': 'slowOrder',
  'duplicate-delivery': 'duplicateDelivery',
  'worker-crash': 'workerCrash',
  'bad-email': 'badEmail',
};

const USAGE = `usage: reprocess demo [options]

Runs the payment story twice on the same seeded traffic and faults: an invoice API that
charges a card and writes the order, a worker that emails the receipt from a queue. First
without protection (naive retries), then with reprocess. Prints what happened and writes an
HTML report.

options:
  --invoices N            payments to make (default 200)
  --seed N                random seed (default 1)
  --concurrency N         payments in flight at once (default 8)
  --store URL             store of the protected API path (default: SQLite in a temp dir)
  --out FILE              HTML report path (default ./reprocess-report.html)
  --json                  print the numbers as JSON
${Object.entries(RATE_FLAGS)
  .map(
    ([flag, key]) =>
      // The column of the other options, or two spaces after a longer flag.
      `  --${flag} RATE`.padEnd(Math.max(26, flag.length + 11)) +
      `fault rate 0..1 (default ${DEFAULT_FAULT_RATES[key]})`,
  )
  .join('\n')}
`;

class UsageError extends Error {}

/**
 * The demo, loaded when it runs: it keeps its records in the embedded SQLite store (the
 * worker's always, the API's unless --store), so a missing better-sqlite3 is told as such,
 * not as a stack trace from the module loader.
 */
async function loadDemo(): Promise<typeof import('../../demo/run-demo.js')> {
  try {
    return await import('../../demo/run-demo.js');
  } catch (error) {
    // The loader's error, or one wrapping it (a bundler or test runner adds its own).
    if (causeChain(error).some((e) => e instanceof Error && e.message.includes('better-sqlite3'))) {
      throw new StoreUnavailableError(
        'the demo runs on the embedded SQLite store: the "better-sqlite3" package is not installed (npm install better-sqlite3@12)',
        error,
      );
    }
    throw error;
  }
}

function whole(text: string | undefined, flag: string, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new UsageError(`${flag} must be a whole number 1..${max}, got ${text}`);
  return v;
}

/** A one-line progress bar on a terminal; silent when stderr is not one. */
function progress(io: CliIo): (mode: DemoMode, done: number, total: number) => void {
  if (!process.stderr.isTTY) return () => undefined;
  return (mode, done, total) => {
    const width = 30;
    const filled = Math.round((done / total) * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    const label = mode === 'protected' ? 'with reprocess   ' : 'without reprocess';
    process.stderr.write(`\r${label} [${bar}] ${done}/${total}${done === total ? '\n' : ''}`);
    void io;
  };
}

/** `reprocess demo`: see USAGE. */
export async function run(args: string[], io: CliIo): Promise<number> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    invoices: { type: 'string' },
    seed: { type: 'string' },
    concurrency: { type: 'string' },
    store: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  };
  for (const flag of Object.keys(RATE_FLAGS)) options[flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    io.err(`reprocess demo: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  let invoices: number;
  let seed: number;
  let concurrency: number;
  const rates: Partial<FaultRates> = {};
  try {
    invoices = whole(values.invoices as string | undefined, '--invoices', 200, 100_000);
    seed = whole(values.seed as string | undefined, '--seed', 1, 2 ** 31 - 1);
    concurrency = whole(values.concurrency as string | undefined, '--concurrency', 8, 256);
    for (const [flag, key] of Object.entries(RATE_FLAGS)) {
      const text = values[flag] as string | undefined;
      if (text === undefined) continue;
      // Number('') is 0: an empty value must not switch a fault off unnoticed.
      const v = text.trim() === '' ? Number.NaN : Number(text);
      if (!(v >= 0 && v <= 1))
        throw new UsageError(`--${flag} must be a rate from 0 to 1, got "${text}"`);
      rates[key] = v;
    }
  } catch (error) {
    io.err(`reprocess demo: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const out = resolve((values.out as string | undefined) ?? 'reprocess-report.html');
  // Before the run, not after it: a report that cannot be written is a usage error.
  const outProblem = await outPathProblem(out);
  if (outProblem !== undefined) {
    io.err(`reprocess demo: --out ${out}: ${outProblem}\n\n${USAGE}`);
    return 2;
  }
  let result: Awaited<ReturnType<typeof runDemo>>;
  try {
    const { runDemo } = await loadDemo();
    result = await runDemo({
      invoices,
      seed,
      concurrency,
      rates,
      ...(values.store === undefined ? {} : { store: values.store as string }),
      onProgress: values.json ? () => undefined : progress(io),
    });
  } catch (error) {
    if (isReprocessError(error)) {
      io.err(`reprocess demo: ${error.message}`);
      // A store URL no store accepts is a usage error, as in every other command.
      return isReprocessError(error, 'INVALID_ARGUMENT') ? 2 : 1;
    }
    throw error;
  }
  const unwritten = await writeReport(out, renderReport(demoReport(result)));
  if (unwritten !== undefined) {
    io.err(`reprocess demo: ${unwritten}`);
    return 1;
  }
  // The demo's claim is that protection leaves no harm: when it does not hold, say so and fail.
  const harm = protectedHarm(result.protected);
  if (values.json) {
    const strip = ({ attemptTimes: _a, retryDelays: _d, ...rest }: typeof result.protected) => rest;
    io.out(
      JSON.stringify(
        {
          invoices: result.invoices,
          seed: result.seed,
          store: result.store,
          unprotected: strip(result.unprotected),
          protected: strip(result.protected),
          report: out,
        },
        null,
        2,
      ),
    );
    if (harm.length > 0) io.err(`reprocess demo: with reprocess, ${harm.join(', ')}`);
    return harm.length > 0 ? 1 : 0;
  }
  io.out(demoTable(result));
  io.out('');
  for (const line of demoSummary(result)) io.out(line);
  io.out(`\nreport: ${out}`);
  if (harm.length > 0) {
    io.err(`reprocess demo: with reprocess, ${harm.join(', ')}`);
    return 1;
  }
  return 0;
}

/** What went wrong with protection, as phrases; empty when nothing did. */
function protectedHarm(p: ModeResult): string[] {
  const harm: Array<[number, string]> = [
    [p.paymentsFailed, 'payments failed'],
    [p.chargedTwice, 'customers were charged twice'],
    [p.duplicateOrders, 'orders were written twice'],
    [p.emailsSentTwice, 'emails went out twice'],
    [p.ordersLost, 'orders were lost'],
    [p.receiptsNeverSent, 'receipts were never sent'],
  ];
  return harm.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`);
}
