/**
 * The part of a `mysql2/promise` pool (or connection) the MySQL store uses. Structural, so
 * the core and the public types never depend on mysql2's own types. Both resolve to
 * `[rows or result header, fields]`, as mysql2/promise does.
 *
 * - `query(sql, values)`: values escaped into the text by the client (used for DDL).
 * - `execute(sql, values)`: a server-side prepared statement, prepared once per connection
 *   (the store's hot path when present; see the store's `preparedStatements` option).
 */
export interface MysqlQueryable {
  query(sql: string, values?: MysqlValue[]): Promise<[unknown, unknown]>;
  execute?(sql: string, values?: MysqlValue[]): Promise<[unknown, unknown]>;
}

/** The only kinds of value the store sends. */
export type MysqlValue = string | number;

/** What the store reads from the header of a write (mysql2's ResultSetHeader). */
export interface MysqlResultHeader {
  affectedRows?: number;
  insertId?: number | string | bigint;
  /** `Rows matched: 1  Changed: 0  Warnings: 0` for an UPDATE. */
  info?: string;
}
