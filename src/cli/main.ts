#!/usr/bin/env node
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type CliCommand, type CliIo, processIo } from './io.js';
import { COMMAND_SUMMARIES, usage } from './usage.js';

/**
 * The commands, loaded on demand so that `reprocess check` never loads the demo's or a
 * store's dependencies.
 */
const COMMANDS: Readonly<Record<string, () => Promise<{ run: CliCommand }>>> = {
  check: () => import('./commands/check.js'),
  demo: () => import('./commands/demo.js'),
  simulate: () => import('./commands/simulate.js'),
  records: () => import('./commands/records.js'),
  store: () => import('./commands/store.js'),
  dlq: () => import('./commands/dlq.js'),
};

/** The package version, from package.json (two levels up from src/cli and dist/cli alike). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: unknown;
  };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

/**
 * `reprocess <command> [...args]`: dispatches to `src/cli/commands/<command>.ts` and returns
 * the exit code (0 ok, 1 failure, 2 usage error). Options before the command are only
 * `--help` and `--version`; everything after the command belongs to the command.
 *
 * @example
 * const code = await main(['check', 'reprocess.yaml'], { out: console.log, err: console.error });
 */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const at = argv.findIndex((a) => !a.startsWith('-'));
  const globalArgs = at === -1 ? [...argv] : argv.slice(0, at);
  let values: { help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      args: globalArgs,
      options: {
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    io.err(`reprocess: ${error instanceof Error ? error.message : String(error)}\n\n${usage()}`);
    return 2;
  }
  if (values.version) {
    io.out(version());
    return 0;
  }
  if (values.help) {
    io.out(usage());
    return 0;
  }
  if (at === -1) {
    io.err(`reprocess: no command given\n\n${usage()}`);
    return 2;
  }
  const name = argv[at] as string;
  const rest = argv.slice(at + 1);
  if (name === 'help') {
    const topic = rest[0];
    if (topic === undefined) {
      io.out(usage());
      return 0;
    }
    return dispatch(topic, ['--help'], io);
  }
  return dispatch(name, rest, io);
}

async function dispatch(name: string, args: string[], io: CliIo): Promise<number> {
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (load === undefined) {
    const known = Object.keys(COMMAND_SUMMARIES).join(', ');
    io.err(`reprocess: unknown command "${name}" (commands: ${known})\n\n${usage()}`);
    return 2;
  }
  const command = await load();
  return command.run(args, io);
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // npm links the bin through a symlink: compare real paths
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // `reprocess simulate | head`: the reader went away, which is not the command's failure.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      processIo.err(
        `reprocess: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
      process.exitCode = 1;
    },
  );
}
