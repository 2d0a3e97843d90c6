/**
 * The part of a `pg.Pool` (or `pg.Client`, or any driver with pg's query API) the PostgreSQL
 * store uses. Structural, so the core and the public types never depend on `pg`'s own types.
 *
 * - `query(text, values)`: one parameterized statement; without values, `text` may hold
 *   several statements (the simple query protocol, used only by `createSchema`).
 * - `query({ name, text, values })`: a named prepared statement, parsed and planned once per
 *   connection and then only bound and executed (the store's hot path; see the store's
 *   `preparedStatements` option for poolers that cannot keep them).
 */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
  query(config: PgQueryConfig): Promise<PgQueryResult>;
}

/** A named prepared statement, in pg's `QueryConfig` shape. */
export interface PgQueryConfig {
  name: string;
  text: string;
  values: unknown[];
}

/** What the store reads from a query result. */
export interface PgQueryResult {
  rows: unknown[];
  rowCount?: number | null;
}
