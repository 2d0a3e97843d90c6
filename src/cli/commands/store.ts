import type { CliIo } from '../io.js';

/** `reprocess store`: not built yet. */
export async function run(_args: string[], io: CliIo): Promise<number> {
  io.err('reprocess store: not available in this build yet');
  return 2;
}
