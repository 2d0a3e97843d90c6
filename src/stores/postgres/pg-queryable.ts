/**
 * The part of a `pg.Pool` (or `pg.Client`, or any compatible driver) the PostgreSQL store
 * uses. Structural, so the core and the public types never depend on `pg`'s own types.
 *
 * A query with `values` must run as one parameterized statement; a query without values may
 * hold several statements (the simple query protocol, used only by `createSchema`).
 */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
}

/** What the store reads from a query result. */
export interface PgQueryResult {
  rows: unknown[];
  rowCount?: number | null;
}
