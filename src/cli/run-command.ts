import { isReprocessError } from '../errors.js';
import type { CliIo } from './io.js';
import { describeError } from './output.js';

/** A command that parses its arguments, opens one resource (a store, a broker), uses it, closes it. */
export interface ResourceCommand<P extends { command: string }, R> {
  /** `records`, `dlq`: the prefix of every message. */
  name: string;
  help: string;
  /** Throws on bad arguments (a usage error: exit 2). */
  parse(args: string[]): P;
  open(parsed: P): Promise<R>;
  execute(parsed: P, resource: R, io: CliIo): Promise<number>;
  close(resource: R): Promise<void>;
}

/**
 * Runs `command` with the exit codes of every CLI command: 2 for a usage error (bad arguments,
 * or an INVALID_ARGUMENT from the library, such as a URL no store accepts), 1 for a failure
 * (unreachable server, missing record), else what `execute` returns. The resource is closed
 * whatever happens, and a failure to close it is not the command's failure.
 */
export async function runResourceCommand<P extends { command: string }, R>(
  command: ResourceCommand<P, R>,
  args: string[],
  io: CliIo,
): Promise<number> {
  const prefix = `reprocess ${command.name}`;
  let parsed: P;
  try {
    parsed = command.parse(args);
  } catch (error) {
    io.err(
      `${prefix}: ${error instanceof Error ? error.message : String(error)}\n\n${command.help}`,
    );
    return 2;
  }
  if (parsed.command === 'help') {
    io.out(command.help);
    return 0;
  }
  const failed = (error: unknown): number => {
    io.err(`${prefix}: ${describeError(error)}`);
    return isReprocessError(error, 'INVALID_ARGUMENT') ? 2 : 1;
  };
  let resource: R;
  try {
    resource = await command.open(parsed);
  } catch (error) {
    return failed(error);
  }
  try {
    return await command.execute(parsed, resource, io);
  } catch (error) {
    return failed(error);
  } finally {
    await command.close(resource).catch(() => {});
  }
}
