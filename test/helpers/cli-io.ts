import type { CliIo } from '../../src/cli/io.js';

/** A CliIo that keeps what a command printed, for assertions. */
export function bufferIo(): CliIo & { stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out: (text) => out.push(text),
    err: (text) => err.push(text),
    stdout: () => out.join('\n'),
    stderr: () => err.join('\n'),
  };
}
