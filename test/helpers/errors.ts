import { isReprocessError } from '../../src/errors.js';

/** The reprocess error code of `error`, or undefined for any other error. */
export function codeOf(error: unknown): string | undefined {
  return isReprocessError(error) ? error.code : undefined;
}

/** What `run` throws or rejects with; fails the test when it returns. */
export async function errorOf(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}
