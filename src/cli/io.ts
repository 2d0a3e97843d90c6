/** Where a CLI command writes; tests pass buffers, the binary passes the process streams. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
};

/** A CLI command: returns the exit code (0 ok, 1 failure, 2 usage error). */
export type CliCommand = (args: string[], io: CliIo) => Promise<number>;
