import type { CliIo } from '../io.js';

/** `reprocess simulate`: not built yet. */
export async function run(_args: string[], io: CliIo): Promise<number> {
  io.err('reprocess simulate: not available in this build yet');
  return 2;
}
