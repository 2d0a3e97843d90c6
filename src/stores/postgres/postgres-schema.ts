import { StoreUnavailableError } from '../../errors.js';
import type { PgQueryResult, PgQueryable } from './pg-queryable.js';
import { storeError } from './postgres-errors.js';

/** What {@link createPostgresSchema} found and did. */
export interface SchemaStatus {
  /** The records table, as written in SQL (`"schema"."table"`). */
  table: string;
  /** Schema version after the call. */
  version: number;
  /** Versions applied by this call (empty when the schema was already current). */
  applied: number[];
}

/** Names a migration works with, all validated and quoted. */
export interface SchemaNames {
  /** `"schema"` or undefined for the search_path. */
  schema: string | undefined;
  /** `"schema"."table"` or `"table"`. */
  table: string;
  /** The version table, qualified like `table`. */
  versionTable: string;
  /** The purge index name, unqualified (an index lives in its table's schema). */
  expiresIndex: string;
}

/**
 * Migrations, in order. Each runs once, inside the transaction that records its version.
 * Never edit a published one: append the next.
 */
const MIGRATIONS: ReadonlyArray<{ version: number; statements: (n: SchemaNames) => string[] }> = [
  {
    version: 1,
    statements: (n) => [
      `CREATE TABLE IF NOT EXISTS ${n.table} (
  key         text COLLATE "C" PRIMARY KEY,
  fingerprint text NOT NULL,
  status      text NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
  token       bigint NOT NULL,
  attempts    integer NOT NULL,
  lease_until bigint NOT NULL,
  expires_at  bigint NOT NULL,
  result      text,
  error       text,
  steps       jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  bigint NOT NULL,
  updated_at  bigint NOT NULL
)`,
      `COMMENT ON TABLE ${n.table} IS 'reprocess idempotency records; times are epoch milliseconds on the server clock'`,
      `CREATE INDEX IF NOT EXISTS ${n.expiresIndex} ON ${n.table} (expires_at)`,
    ],
  },
];

/** The newest schema version this code knows. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Creates or upgrades the store's table, its purge index and its version table. Safe to run
 * concurrently and repeatedly: one transaction under an advisory lock, each migration once.
 * Refuses a schema newer than this code (a newer reprocess migrated it).
 */
export async function createPostgresSchema(
  db: PgQueryable,
  names: SchemaNames,
): Promise<SchemaStatus> {
  const current = await currentVersion(db, names);
  if (current > SCHEMA_VERSION) {
    throw new StoreUnavailableError(
      `postgres store: ${names.table} is at schema version ${current}, newer than this reprocess knows (${SCHEMA_VERSION}); upgrade reprocess`,
    );
  }
  const pending = MIGRATIONS.filter((m) => m.version > current);
  if (pending.length === 0) return { table: names.table, version: current, applied: [] };

  // One simple-protocol query (no parameters: every name is a validated identifier) runs
  // as one implicit transaction; the advisory lock serialises concurrent initialisers, and
  // each migration re-checks the version so a loser of that race applies nothing twice. What
  // this call applied is noted in a transaction-local setting and read back at the end.
  const statements = [
    `SELECT pg_advisory_xact_lock(hashtext('reprocess.schema'))`,
    names.schema === undefined ? '' : `CREATE SCHEMA IF NOT EXISTS ${names.schema}`,
    `CREATE TABLE IF NOT EXISTS ${names.versionTable} (
  version    integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)`,
    `SELECT set_config('reprocess.applied', '', true)`,
  ];
  for (const migration of pending) {
    statements.push(`DO $reprocess$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ${names.versionTable} WHERE version = ${migration.version}) THEN
    ${migration
      .statements(names)
      .map((s) => `EXECUTE ${dollarQuote(s)};`)
      .join('\n    ')}
    INSERT INTO ${names.versionTable} (version) VALUES (${migration.version});
    PERFORM set_config('reprocess.applied',
      current_setting('reprocess.applied') || ' ${migration.version}', true);
  END IF;
END
$reprocess$`);
  }
  statements.push(`SELECT current_setting('reprocess.applied') AS applied`);
  const script = statements.filter((s) => s.length > 0).join(';\n');
  let applied: number[] | undefined;
  for (let attempt = 1; applied === undefined; attempt++) {
    try {
      const results = (await db.query(script)) as PgQueryResult | PgQueryResult[];
      const last = Array.isArray(results) ? results[results.length - 1] : results;
      const text = (last?.rows[0] as { applied?: unknown } | undefined)?.applied;
      applied = String(text ?? '')
        .split(' ')
        .filter((v) => v.length > 0)
        .map(Number);
    } catch (error) {
      // A backend that waited on the advisory lock while another created the objects can
      // still miss them (its catalog cache is only refreshed by a new transaction, seen when a
      // pooled connection had used a schema that was since dropped): its IF NOT EXISTS then
      // collides with them. Once more, in a new transaction, it sees them.
      if (attempt < 3 && isDuplicateObject(error)) continue;
      throw storeError('createSchema', error);
    }
  }
  const version = await currentVersion(db, names);
  return { table: names.table, version, applied };
}

/** unique_violation (on a catalog), duplicate_schema, duplicate_table, duplicate_object. */
const DUPLICATE_OBJECT = new Set(['23505', '42P06', '42P07', '42710']);

function isDuplicateObject(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && DUPLICATE_OBJECT.has(code);
}

/** The highest applied version; 0 when the version table does not exist. */
async function currentVersion(db: PgQueryable, names: SchemaNames): Promise<number> {
  try {
    const found = await db.query('SELECT to_regclass($1::text) IS NOT NULL AS present', [
      names.versionTable,
    ]);
    if ((found.rows[0] as { present?: unknown } | undefined)?.present !== true) return 0;
    const result = await db.query(
      `SELECT coalesce(max(version), 0)::int AS version FROM ${names.versionTable}`,
    );
    return Number((result.rows[0] as { version?: unknown } | undefined)?.version ?? 0);
  } catch (error) {
    throw storeError('createSchema', error);
  }
}

/** A dollar-quoted literal of DDL text (the text holds no `$ddl$`: it is ours). */
function dollarQuote(text: string): string {
  return `$ddl$${text}$ddl$`;
}
