import { InvalidArgumentError } from '../../errors.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Checks a table or database name and returns it backtick-quoted for SQL. Names are
 * validated, never escaped: nothing but `[A-Za-z0-9_]` reaches the statement text.
 * `maxLength` keeps derived names (`<table>_schema_version`) within MySQL's 64 characters.
 */
export function quoteIdentifier(what: string, name: unknown, maxLength: number): string {
  if (typeof name !== 'string' || name.length > maxLength || !IDENTIFIER.test(name)) {
    throw new InvalidArgumentError(
      `mysql store: ${what} must match ${IDENTIFIER.source} and be at most ${maxLength} characters, got ${
        typeof name === 'string' ? JSON.stringify(name) : typeof name
      }`,
    );
  }
  return `\`${name}\``;
}
