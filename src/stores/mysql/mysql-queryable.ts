/**
 * The part of a `mysql2/promise` pool (or connection) the MySQL store uses. Structural, so
 * the core and the public types never depend on mysql2's own types. `query` resolves to
 * `[rows or result header, fields]`, as mysql2/promise does.
 */
export interface MysqlQueryable {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
}

/** What the store reads from the header of a write (mysql2's ResultSetHeader). */
export interface MysqlResultHeader {
  affectedRows?: number;
  insertId?: number | string | bigint;
  /** `Rows matched: 1  Changed: 0  Warnings: 0` for an UPDATE. */
  info?: string;
}
