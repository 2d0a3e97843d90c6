import { InvalidArgumentError } from '../../errors.js';

/** Identifiers the store accepts for its table and schema: a letter or `_`, then letters, digits, `_`. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Checks a table or schema name and returns it double-quoted for SQL. Names are validated,
 * never escaped: nothing but `[A-Za-z0-9_]` reaches the statement text. `maxLength` keeps
 * derived names (`<table>_schema_version`) within PostgreSQL's 63-byte limit.
 */
export function quoteIdentifier(what: string, name: unknown, maxLength: number): string {
  if (typeof name !== 'string' || name.length > maxLength || !IDENTIFIER.test(name)) {
    throw new InvalidArgumentError(
      `postgres store: ${what} must match ${IDENTIFIER.source} and be at most ${maxLength} characters, got ${
        typeof name === 'string' ? JSON.stringify(name) : typeof name
      }`,
    );
  }
  return `"${name}"`;
}
