import { RecordCorruptError, StoreUnavailableError, isReprocessError } from '../../errors.js';

/** The SQLite result code of a better-sqlite3 error (`SQLITE_BUSY`, ...), if it has one. */
export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** Lock contention that outlived busy_timeout: worth another try a moment later. */
export function isBusy(error: unknown): boolean {
  const code = sqliteCode(error);
  return code !== undefined && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

function isMalformedJson(error: unknown): boolean {
  return error instanceof Error && /malformed JSON/i.test(error.message);
}

/**
 * Turns a driver error into the typed error the core expects, with a message that names the
 * file and what to do. Errors that are already reprocess errors pass through.
 */
export function translateSqliteError(error: unknown, where: string, doing: string): Error {
  if (isReprocessError(error)) return error;
  const code = sqliteCode(error) ?? '';
  const detail = error instanceof Error ? error.message : String(error);
  const at = `sqlite store ${where}`;
  if (isMalformedJson(error)) {
    return new RecordCorruptError(
      `${at}: ${doing}: a stored record has invalid JSON in its steps (${detail})`,
      error,
    );
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new StoreUnavailableError(
      `${at}: ${doing}: the database stayed locked by another connection past busy_timeout and the retries (${code})`,
      error,
    );
  }
  if (code === 'SQLITE_NOTADB') {
    return new StoreUnavailableError(
      `${at}: the file exists but is not a SQLite database (${detail})`,
      error,
    );
  }
  if (code.startsWith('SQLITE_CORRUPT')) {
    return new RecordCorruptError(
      `${at}: the database file is corrupt (${code}: ${detail})`,
      error,
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return new StoreUnavailableError(
      `${at}: cannot open the database file: the directory is missing or not writable (${code}: ${detail})`,
      error,
    );
  }
  if (
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_PERM') ||
    code === 'SQLITE_AUTH'
  ) {
    return new StoreUnavailableError(
      `${at}: ${doing}: the database is read-only for this process; give it a writable file and directory (${code}: ${detail})`,
      error,
    );
  }
  if (code.startsWith('SQLITE_FULL') || code.startsWith('SQLITE_IOERR')) {
    return new StoreUnavailableError(`${at}: ${doing}: disk error (${code}: ${detail})`, error);
  }
  if (error instanceof TypeError && /not open/i.test(detail)) {
    return new StoreUnavailableError(`${at}: ${doing}: the store is closed`, error);
  }
  return new StoreUnavailableError(
    `${at}: ${doing} failed: ${code ? `${code}: ` : ''}${detail}`,
    error,
  );
}
