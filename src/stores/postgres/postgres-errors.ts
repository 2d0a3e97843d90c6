import { StoreUnavailableError, isReprocessError } from '../../errors.js';

/*
 * Driver errors become StoreUnavailableError: the store did not answer, so the core fails
 * closed and never runs the operation unguarded. The driver's error stays as `cause`.
 */

/** SQLSTATEs after which the same statement may simply run again (nothing was written). */
const TRANSIENT = new Set(['40001', '40P01']);

/** True for a serialization failure or deadlock: the statement was rolled back whole. */
export function isTransientConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT.has(code);
}

/** Wraps anything a query threw (reprocess errors pass through). */
export function storeError(operation: string, error: unknown): Error {
  if (isReprocessError(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message || error.name : String(error);
  let hint = '';
  if (code === '42P01' || code === '3F000') {
    hint = ' (the table does not exist: run createSchema() or `reprocess store init <url>`)';
  }
  return new StoreUnavailableError(
    `postgres store: ${operation} failed: ${message}${typeof code === 'string' ? ` [${code}]` : ''}${hint}`,
    error,
  );
}
