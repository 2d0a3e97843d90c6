import { StoreUnavailableError } from '../../errors.js';
import type { MysqlQueryable } from './mysql-queryable.js';
import { storeError } from './mysql-errors.js';

/** What {@link createMysqlSchema} found and did. */
export interface MysqlSchemaStatus {
  /** The records table, as written in SQL (`` `db`.`table` ``). */
  table: string;
  /** Schema version after the call. */
  version: number;
  /** Versions applied by this call (empty when the schema was already current). */
  applied: number[];
}

/** Names a migration works with, all validated and quoted. */
export interface MysqlSchemaNames {
  /** `` `db`.`table` `` or `` `table` `` (the connection's database). */
  table: string;
  /** The version table, qualified like `table`. */
  versionTable: string;
  /** The purge index name. */
  expiresIndex: string;
}

/**
 * Migrations, in order. MySQL commits every DDL statement on its own, so a migration cannot
 * be one transaction: each statement must be safe to run again (IF NOT EXISTS), and its
 * version is recorded after the last one. Never edit a published one: append the next.
 */
const MIGRATIONS: ReadonlyArray<{
  version: number;
  statements: (n: MysqlSchemaNames) => string[];
}> = [
  {
    version: 1,
    statements: (n) => [
      // key and fingerprint are VARBINARY: exact byte comparison. A utf8mb4 *_bin VARCHAR
      // is a PAD SPACE collation on MariaDB and MySQL 5.7, where 'k' = 'k ' would collide.
      `CREATE TABLE IF NOT EXISTS ${n.table} (
  \`key\`     VARBINARY(255) NOT NULL,
  fingerprint VARBINARY(255) NOT NULL,
  status      VARCHAR(16) CHARACTER SET ascii NOT NULL,
  token       BIGINT NOT NULL,
  attempts    INT NOT NULL,
  lease_until BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL,
  result      LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  error       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  steps       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  PRIMARY KEY (\`key\`),
  KEY ${n.expiresIndex} (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
  COMMENT='reprocess idempotency records; times are epoch ms on the server clock'`,
    ],
  },
];

/** The newest schema version this code knows. */
export const MYSQL_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Creates or upgrades the store's table (with its purge index) and its version table. Safe to
 * run concurrently and repeatedly. Refuses a schema newer than this code.
 */
export async function createMysqlSchema(
  db: MysqlQueryable,
  names: MysqlSchemaNames,
): Promise<MysqlSchemaStatus> {
  try {
    await db.query(`CREATE TABLE IF NOT EXISTS ${names.versionTable} (
  version    INT NOT NULL PRIMARY KEY,
  applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB`);
    const current = await currentVersion(db, names);
    if (current > MYSQL_SCHEMA_VERSION) {
      throw new StoreUnavailableError(
        `mysql store: ${names.table} is at schema version ${current}, newer than this reprocess knows (${MYSQL_SCHEMA_VERSION}); upgrade reprocess`,
      );
    }
    const applied: number[] = [];
    for (const migration of MIGRATIONS.filter((m) => m.version > current)) {
      for (const statement of migration.statements(names)) await db.query(statement);
      const [inserted] = await db.query(
        `INSERT IGNORE INTO ${names.versionTable} (version) VALUES (?)`,
        [migration.version],
      );
      // Concurrent callers all run the (idempotent) statements; the one whose row went in
      // applied the migration.
      if ((inserted as { affectedRows?: unknown } | null)?.affectedRows === 1) {
        applied.push(migration.version);
      }
    }
    return { table: names.table, version: await currentVersion(db, names), applied };
  } catch (error) {
    throw storeError('createSchema', error);
  }
}

async function currentVersion(db: MysqlQueryable, names: MysqlSchemaNames): Promise<number> {
  const [rows] = await db.query(
    `SELECT COALESCE(MAX(version), 0) AS version FROM ${names.versionTable}`,
  );
  return Number((rows as Array<{ version?: unknown }>)[0]?.version ?? 0);
}
