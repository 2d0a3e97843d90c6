import { stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Whether `path` is a directory (false when it does not exist or cannot be read). */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * What is wrong with `out` as the path of a report to write, checked before a run: its
 * directory is missing, or it is a directory itself. Undefined when it looks writable.
 */
export async function outPathProblem(out: string): Promise<string | undefined> {
  if (!(await isDirectory(dirname(out)))) return `no such directory ${dirname(out)}`;
  if (await isDirectory(out)) return 'is a directory; give a file path';
  return undefined;
}

/** Writes a report; the reason as one line when it cannot (a full disk, no permission). */
export async function writeReport(out: string, text: string): Promise<string | undefined> {
  try {
    await writeFile(out, text);
    return undefined;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return `cannot write the report ${out}${typeof code === 'string' ? ` (${code})` : ''}`;
  }
}
