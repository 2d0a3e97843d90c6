import {
  ErrorCode,
  ResultNotStorableError,
  StoreUnavailableError,
  isReprocessError,
} from '../../errors.js';

/*
 * Driver errors become StoreUnavailableError: the store did not answer, so the core fails
 * closed and never runs the operation unguarded. The driver's error stays as `cause`.
 */

/**
 * Deadlock: InnoDB chose this statement as the victim and rolled it back; it may run again.
 * A lock wait timeout (1205) is not one: the statement waited the whole time it was allowed
 * (openMysqlStore sets it to its query timeout), so the store did not answer in time.
 */
const TRANSIENT = new Set([1213]);

/** True for an error after which the same statement may simply run again. */
export function isTransientConflict(error: unknown): boolean {
  const errno = (error as { errno?: unknown } | null)?.errno;
  return typeof errno === 'number' && TRANSIENT.has(errno);
}

/** True for a duplicate primary key (ER_DUP_ENTRY). */
export function isDuplicateKey(error: unknown): boolean {
  return (error as { errno?: unknown } | null)?.errno === 1062;
}

/** ER_NET_PACKET_TOO_LARGE, ER_WARN_ALLOWED_PACKET_OVERFLOWED: the server refused the size. */
const TOO_LARGE = new Set([1153, 1301]);

/** Wraps anything a query threw (reprocess errors pass through). */
export function storeError(operation: string, error: unknown): Error {
  if (isReprocessError(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const errno = (error as { errno?: unknown } | null)?.errno;
  if (typeof errno === 'number' && TOO_LARGE.has(errno)) {
    // Refused for its size, nothing written: the core records it as the operation's failure.
    return new ResultNotStorableError(
      `mysql store: ${operation} refused by the server for its size (max_allowed_packet)`,
      error,
      ErrorCode.RESULT_TOO_LARGE,
    );
  }
  const message = error instanceof Error ? error.message || error.name : String(error);
  const hint =
    errno === 1146
      ? ' (the table does not exist: run createSchema() or `reprocess store init <url>`)'
      : '';
  return new StoreUnavailableError(
    `mysql store: ${operation} failed: ${message}${typeof code === 'string' ? ` [${code}]` : ''}${hint}`,
    error,
  );
}
