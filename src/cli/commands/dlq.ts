import type { CliIo } from '../io.js';

/** `reprocess dlq`: not built yet. */
export async function run(_args: string[], io: CliIo): Promise<number> {
  io.err('reprocess dlq: not available in this build yet');
  return 2;
}
