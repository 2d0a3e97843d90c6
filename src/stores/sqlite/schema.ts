import type BetterSqlite3 from 'better-sqlite3';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';

import { SCHEMA_VERSION } from './schema-version.js';

export { SCHEMA_VERSION };

/** The table of schema versions and token high-water marks, shared by every records table. */
export const META_TABLE = 'reprocess_meta';

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Checks a records table name: an SQL identifier, so it can be spliced into statements. */
export function checkTableName(table: unknown): string {
  if (typeof table !== 'string' || !TABLE_NAME.test(table) || table === META_TABLE) {
    throw new InvalidArgumentError(
      `sqlite store table must be a name of letters, digits and _ (1-63 characters, not a digit first, not "${META_TABLE}"); got ${JSON.stringify(table)}`,
    );
  }
  return table;
}

/** Meta row names for one records table. */
export function metaNames(table: string): { version: string; highWater: string } {
  return { version: `schema_version:${table}`, highWater: `token_high_water:${table}` };
}

/** The records table of version 2 (version 1 was the same columns WITHOUT ROWID). */
function recordsTable(table: string): string {
  return `
    CREATE TABLE ${table} (
      key TEXT PRIMARY KEY NOT NULL,
      fingerprint TEXT NOT NULL,
      status TEXT NOT NULL,
      token INTEGER NOT NULL,
      attempts INTEGER NOT NULL,
      lease_until INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      result TEXT,
      error TEXT,
      steps TEXT NOT NULL DEFAULT '{}',
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );`;
}

/**
 * The AFTER DELETE trigger keeps the greatest token ever removed, so a key that is deleted
 * (by `delete`, `purgeExpired` or an operator with the sqlite3 shell) never sees an old
 * token again.
 */
function highWaterTrigger(table: string): string {
  const { highWater } = metaNames(table);
  return `
    CREATE TRIGGER ${table}_token_high_water AFTER DELETE ON ${table} BEGIN
      UPDATE ${META_TABLE} SET value = max(value, OLD.token) WHERE name = '${highWater}';
    END;`;
}

/**
 * Version 2. `steps` is a JSON object of step name to encoded result.
 *
 * A rowid table with the key in its primary-key index, and no index on expires_at. Rows are
 * appended in rowid order, so the records written at about the same time share a few table
 * pages: with group commit, the completes of a batch change those few pages (and no index
 * page, the key does not change) instead of one page per key, and the inserts change one
 * small index entry per key. Measured with 32 operations per transaction, insert + complete
 * cost about 30% less CPU than in version 1's WITHOUT ROWID table, where each key's wide row
 * sits on its own page of a key-ordered b-tree; one operation per transaction costs the same.
 * `purgeExpired` scans in rowid order (roughly creation order), in bounded chunks.
 *
 * No CHECK on status: evaluating it made every insert and update about 15% slower, and a
 * record is validated when it is read back anyway (an unknown status is RecordCorruptError).
 */
function createV2(table: string): string {
  const { highWater } = metaNames(table);
  return `
    ${recordsTable(table)}
    ${highWaterTrigger(table)}
    INSERT INTO ${META_TABLE} (name, value) VALUES ('${highWater}', 0);
  `;
}

/**
 * Steps from version n to n + 1, by n. Each runs inside the IMMEDIATE transaction of
 * {@link ensureSchema}, so another process sees the old table or the new one, never half.
 */
const MIGRATIONS: Record<number, (table: string) => string> = {
  // 1 -> 2: the same columns and rows, moved from a WITHOUT ROWID table to a rowid table
  // (in key order). The high-water mark stays in the meta table; dropping the old table
  // fires no DELETE trigger, and its trigger goes with it. The copy's name has a `$`, which
  // no records table can have (TABLE_NAME), so it never meets another table of the file.
  1: (table) => {
    const copy = `"${table}$v2"`;
    return `
    ${recordsTable(copy)}
    INSERT INTO ${copy} SELECT * FROM ${table} ORDER BY key;
    DROP TABLE ${table};
    ALTER TABLE ${copy} RENAME TO ${table};
    ${highWaterTrigger(table)}
  `;
  },
};

/** The schema version of `table` in the file: 0 when it was never created. */
export function schemaVersion(db: BetterSqlite3.Database, table: string): number {
  return readVersion(db, table);
}

function readVersion(db: BetterSqlite3.Database, table: string): number {
  const meta = db
    .prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`)
    .get(META_TABLE);
  if (!meta) return 0;
  const row = db
    .prepare(`SELECT value FROM ${META_TABLE} WHERE name = ?`)
    .get(metaNames(table).version) as { value: number } | undefined;
  return row?.value ?? 0;
}

/**
 * Creates or migrates the schema of `table`. The check is a plain read, so opening an
 * up-to-date file writes nothing; creation and migration run in one IMMEDIATE transaction
 * that reads the version again, so two processes opening a new file at once cannot both
 * create it (the second waits for the lock, then sees the version the first wrote).
 */
export function ensureSchema(db: BetterSqlite3.Database, table: string, where: string): void {
  const tooNew = (version: number) =>
    new StoreUnavailableError(
      `sqlite store ${where}: table "${table}" has schema version ${version}, newer than the ${SCHEMA_VERSION} this version of reprocess understands; upgrade reprocess`,
    );
  const seen = readVersion(db, table);
  if (seen === SCHEMA_VERSION) return;
  if (seen > SCHEMA_VERSION) throw tooNew(seen);

  const migrate = db.transaction(() => {
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${META_TABLE} (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)`,
    );
    let version = readVersion(db, table);
    if (version > SCHEMA_VERSION) throw tooNew(version);
    if (version === SCHEMA_VERSION) return;
    if (version === 0) {
      db.exec(createV2(table));
      version = 2;
    }
    while (version < SCHEMA_VERSION) {
      const step = MIGRATIONS[version];
      if (!step) throw new Error(`no migration from schema version ${version}`);
      db.exec(step(table));
      version++;
    }
    db.prepare(
      `INSERT INTO ${META_TABLE} (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
    ).run(metaNames(table).version, version);
  });
  migrate.immediate();
}
