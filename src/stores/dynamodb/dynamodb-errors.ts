import { ErrorCode, ResultNotStorableError, StoreUnavailableError } from '../../errors.js';
import type { Item } from './item.js';

/** True for a failed condition: an expected outcome (lease lost, record exists), not a failure. */
export function isConditionFailed(error: unknown): error is Error & { Item?: Item } {
  return errorName(error) === 'ConditionalCheckFailedException';
}

/**
 * Maps an SDK failure to a reprocess error: an item over the size limit is
 * `ResultNotStorableError` (RESULT_TOO_LARGE); anything else (network, throttling, a missing
 * table, a server error) means the store did not answer: `StoreUnavailableError`, fail closed.
 */
export function toStoreError(error: unknown, operation: string, table: string): Error {
  const name = errorName(error);
  const message = error instanceof Error ? error.message : String(error);
  if (name === 'ValidationException' && /item size/i.test(message)) {
    return new ResultNotStorableError(
      `dynamodb store: ${operation}: the item in table ${table} would exceed DynamoDB's 400 KB item limit (${message})`,
      error,
      ErrorCode.RESULT_TOO_LARGE,
    );
  }
  if (name === 'ResourceNotFoundException') {
    return new StoreUnavailableError(
      `dynamodb store: ${operation}: table ${table} not found (create it with store.createTable()): ${message}`,
      error,
    );
  }
  return new StoreUnavailableError(
    `dynamodb store: ${operation} on table ${table} failed: ${name ? `${name}: ` : ''}${message}`,
    error,
  );
}

/**
 * True for an update DynamoDB refused because the item is not shaped as the expression
 * expects (a `steps` attribute removed or of another type by hand): a corrupt record, not an
 * outage, once a read confirms it.
 */
export function isDocumentPathInvalid(error: unknown): boolean {
  return (
    errorName(error) === 'ValidationException' &&
    error instanceof Error &&
    /document path/i.test(error.message)
  );
}

function errorName(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const name = (error as { name?: unknown }).name;
  return typeof name === 'string' ? name : undefined;
}
