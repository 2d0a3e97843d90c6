import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/** The example of DESIGN.md ("Config file"), byte for byte. */
export const DESIGN_EXAMPLE = `idempotency:
  key_source: requestId
  store: key-value
  ttl_hours: 24
  on_duplicate: return_previous_result
retry_policy:
  max_attempts: 5
  backoff: exponential
  jitter: full
`;

/** A temporary folder of files that one test file writes and reads. */
export interface TempFiles {
  /** Writes `text` to `name` in the folder; returns its path. */
  write(name: string, text: string): Promise<string>;
  /** The path `name` would have in the folder (the file need not exist). */
  path(name: string): string;
  /** The folder itself. */
  dir(): string;
}

/** A temporary folder, made before the tests of the calling file and removed after them. */
export function configFiles(prefix: string): TempFiles {
  let folder: string | undefined;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    if (folder !== undefined) await rm(folder, { recursive: true, force: true });
  });
  const dir = (): string => {
    if (folder === undefined) throw new Error('configFiles: use the folder inside tests only');
    return folder;
  };
  return {
    dir,
    path: (name) => join(dir(), name),
    async write(name, text) {
      const path = join(dir(), name);
      await writeFile(path, text);
      return path;
    },
  };
}
