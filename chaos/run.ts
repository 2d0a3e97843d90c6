/**
 * `npm run chaos -- [flags]`: the proof under faults (docs/readme/chaos.md). Prints the
 * figures (or the JSON report with --json) and exits 0 when every invariant held, 1 when
 * one failed, 2 for bad flags, 3 when a service could not be reached.
 */
import { connect } from 'node:net';
import { isReprocessError } from '../src/errors.js';
import { formatFigures } from './figures.js';
import { type ChaosOptions, USAGE, parseChaosArgs } from './options.js';
import { runChaos } from './run-chaos.js';

async function main(argv: readonly string[]): Promise<number> {
  let options: ChaosOptions;
  try {
    const parsed = parseChaosArgs(argv);
    if (parsed.kind === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    options = parsed.options;
  } catch (error) {
    if (isReprocessError(error)) {
      process.stderr.write(`chaos: ${error.message}\n`);
      return 2;
    }
    throw error;
  }

  const missing = await unreachable(options);
  if (missing.length > 0) {
    process.stderr.write(`chaos: cannot reach ${missing.join(', ')}\n`);
    return 3;
  }

  const log = options.quiet
    ? () => undefined
    : (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  const abort = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('chaos: interrupted, finishing the current step and cleaning up\n');
    abort.abort();
  });
  const report = await runChaos(options, log, abort.signal);
  process.stdout.write(
    options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatFigures(report)}\n`,
  );
  return report.ok ? 0 : 1;
}

/** The services of `options` that do not accept a TCP connection. */
async function unreachable(options: ChaosOptions): Promise<string[]> {
  const wanted: Array<[string, string]> = [
    ['PostgreSQL', options.urls.postgres],
    ...(options.store === 'redis' ? [['Redis', options.urls.redis] as [string, string]] : []),
    ...(options.phases.includes('amqp')
      ? [['RabbitMQ', options.urls.amqp] as [string, string]]
      : []),
    ...(options.phases.includes('nats') ? [['NATS', options.urls.nats] as [string, string]] : []),
  ];
  const results = await Promise.all(
    wanted.map(async ([name, url]) => ((await reachable(url)) ? undefined : `${name} at ${url}`)),
  );
  return results.filter((r): r is string => r !== undefined);
}

function reachable(url: string): Promise<boolean> {
  const parsed = new URL(url.includes('://') ? url : `tcp://${url}`);
  const defaults: Record<string, number> = {
    'postgres:': 5432,
    'postgresql:': 5432,
    'redis:': 6379,
    'amqp:': 5672,
    'nats:': 4222,
  };
  const port = Number(parsed.port || defaults[parsed.protocol] || 0);
  return new Promise((resolve) => {
    const socket = connect({ host: parsed.hostname || '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

// Exit explicitly once the output is written: a client the run forgot to close must not keep
// the command hanging after its verdict.
function exit(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

main(process.argv.slice(2)).then(exit, (error: unknown) => {
  process.stderr.write(
    `chaos: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  exit(3);
});
