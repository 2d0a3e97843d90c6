/*
 * Every statement of the MySQL/MariaDB store, for one (validated, quoted) table name.
 * Values always travel as parameters.
 *
 * The clock. `UTC_TIMESTAMP(6)` is read once per statement by the server (MySQL evaluates
 * every current-time function once, at the start of the statement), so every time a
 * statement writes comes from one reading of the server's clock, never the client's.
 * Not `UNIX_TIMESTAMP(NOW(3))`: that converts a local time back to UTC in the session's time
 * zone, which is ambiguous for the repeated hour when daylight saving time ends.
 *
 * Tokens are `GREATEST(previous + 1, now in microseconds)`: greater than the previous token
 * while the row exists, greater than any token issued before a delete because the floor is
 * the clock. MySQL has no RETURNING, so a write hands a value back through
 * `LAST_INSERT_ID(expr)`: the documented way for an INSERT or UPDATE to report one number
 * in its result header (`insertId`), with no second statement.
 */

const NOW_US = `TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))`;
const NOW_MS = `(${NOW_US} DIV 1000)`;

/** Columns of a record, in the order the store reads them. */
export const RECORD_COLUMNS =
  '`key`, fingerprint, status, token, attempts, lease_until, expires_at, result, error, steps, created_at, updated_at';

/** The SQL of one store table. */
export interface MysqlStatements {
  /** ? fingerprint, ? key → the record and `live` (1: must not be acquired, answer as it is). */
  read: string;
  /** ? key, ? fingerprint, ? lease, ? ttl, ? lease → insertId = token; ER_DUP_ENTRY when present. */
  insert: string;
  /** ? fingerprint, ? lease, ? ttl, ? lease, ? lease, ? key, ? fingerprint → insertId = token when matched. */
  takeOver: string;
  /** ? key, ? token → the record as this acquisition left it. */
  readHeld: string;
  /** ? result, ? ttl, ? key, ? token. */
  complete: string;
  /** ? error, ? ttl, ? key, ? token. */
  fail: string;
  /** ? key, ? token. */
  release: string;
  /** ? lease, ? lease, ? key, ? token → insertId = lease_until when matched. */
  heartbeat: string;
  /** ? name, ? result, ? key, ? token. */
  saveStep: string;
  /** ? key. */
  get: string;
  /** ? key. */
  delete: string;
  /** Filters are added by the store; ? limit last. */
  listPrefix: string;
  purgeAll: string;
  /** ? limit. */
  purgeSome: string;
}

/** The batched statements for `n` distinct keys (built once per size and cached). */
export interface MysqlBatchStatements {
  /** n × ? key → the records found, each with `now_ms` (the statement's clock reading). */
  readMany: string;
  /** n × (? key, ? fingerprint, ? lease, ? ttl, ? lease) → insertId = token of every row. */
  insertMany: string;
  /**
   * n × (? key, ? token, ? 1 complete / 0 fail, ? result or error, ? ttl) → rows matched;
   * insertId = the statement's clock reading in ms, written as every matched row's updated_at.
   */
  finishMany: string;
  /** n × ? key → `key`, token, status, updated_at, result, error of the records found. */
  checkMany: string;
}

/** Builds the statements for `table`, a validated and quoted (optionally qualified) name. */
export function mysqlStatements(table: string): MysqlStatements {
  // Fenced writes: only while the stored token is the caller's and the record is in progress.
  const fenced = "`key` = ? AND token = ? AND status = 'in_progress'";
  return {
    /*
     * begin is optimistic, in one of two orders that the store picks from what recent calls
     * found (mysql-store.ts, BeginOrder). Read-first, while most keys already have a record:
     *
     *   read ─ live ───────────────────────────────► existing (1 round trip: a replay)
     *     ├─ no row ─► insert ─ ok ─────────────────► acquired (2 round trips)
     *     │              └─ duplicate key ─► read again
     *     └─ not live ─► takeOver ─ matched ─► readHeld ─► acquired (takeover or fresh start)
     *                        └─ not matched ─► read again
     *
     * Insert-first, while most keys are new: the same plain INSERT, and on a duplicate key
     * the read above. A new key is then 1 round trip (with complete, 2: the floor's count),
     * a replay 2. The writes are the same statements either way, so the order changes only
     * the cost, never who acquires.
     *
     * Why not the two forms the issue names. A transaction with SELECT ... FOR UPDATE costs
     * 4 round trips, and FOR UPDATE on a missing key takes a gap lock that deadlocks two
     * concurrent first calls. INSERT ... ON DUPLICATE KEY UPDATE with conditions cannot
     * hand back the existing record (MySQL has no RETURNING; MariaDB's RETURNING is not in
     * MySQL) and needs a second read anyway, after taking a row lock even for a replay; its
     * assignments also see each other's new values left to right, which makes multi-column
     * conditions fragile. Here each write is one atomic conditional statement whose
     * condition InnoDB checks on the latest row version under the row lock, so of any
     * number of concurrent callers exactly one acquires; a replay is a plain consistent
     * read, as cheap as the raw floor.
     *
     * A `live` answer is valid at the read: the record was not acquirable at the statement's
     * clock reading, and a record only becomes MORE acquirable as time passes.
     */
    read: `SELECT ${RECORD_COLUMNS},
    (expires_at > ${NOW_MS} AND NOT (status = 'in_progress' AND lease_until <= ${NOW_MS}
                                      AND fingerprint = ?)) AS live
  FROM ${table} WHERE \`key\` = ?`,
    // token = now_us exactly (no previous row), so lease_until = token DIV 1000 + lease.
    insert: `INSERT INTO ${table} (\`key\`, fingerprint, status, token, attempts, lease_until,
    expires_at, result, error, steps, created_at, updated_at)
  VALUES (?, ?, 'in_progress', LAST_INSERT_ID(${NOW_US}), 1, ${NOW_MS} + ?,
    GREATEST(${NOW_MS} + ?, ${NOW_MS} + ?), NULL, NULL, '{}', ${NOW_MS}, ${NOW_MS})`,
    /*
     * The acquire condition is in the WHERE (checked before any assignment). MySQL assigns
     * left to right and later expressions see earlier NEW values (MariaDB's
     * SIMULTANEOUS_ASSIGNMENT mode does not): no expression here reads a column assigned
     * before it, so both modes give the same row. `expires_at` is assigned last because the
     * others read it.
     */
    takeOver: `UPDATE ${table} SET
    token = LAST_INSERT_ID(GREATEST(token + 1, ${NOW_US})),
    attempts = IF(expires_at <= ${NOW_MS}, 1, attempts + 1),
    steps = IF(expires_at <= ${NOW_MS}, '{}', steps),
    created_at = IF(expires_at <= ${NOW_MS}, ${NOW_MS}, created_at),
    result = NULL,
    error = NULL,
    fingerprint = ?,
    status = 'in_progress',
    lease_until = ${NOW_MS} + ?,
    updated_at = ${NOW_MS},
    expires_at = IF(expires_at <= ${NOW_MS}, GREATEST(${NOW_MS} + ?, ${NOW_MS} + ?),
                    GREATEST(expires_at, ${NOW_MS} + ?))
  WHERE \`key\` = ? AND (expires_at <= ${NOW_MS}
     OR (status = 'in_progress' AND lease_until <= ${NOW_MS} AND fingerprint = ?))`,
    readHeld: `SELECT ${RECORD_COLUMNS} FROM ${table} WHERE \`key\` = ? AND token = ?`,
    complete: `UPDATE ${table} SET status = 'completed', result = ?, error = NULL, lease_until = 0,
    expires_at = ${NOW_MS} + ?, updated_at = ${NOW_MS}
  WHERE ${fenced}`,
    fail: `UPDATE ${table} SET status = 'failed', result = NULL, error = ?, lease_until = 0,
    expires_at = ${NOW_MS} + ?, updated_at = ${NOW_MS}
  WHERE ${fenced}`,
    // The first two parameters (the same number) keep the record at least this long from
    // now; 0 leaves the expiry as it is, even one already passed.
    release: `UPDATE ${table} SET lease_until = 0,
    expires_at = IF(? > 0, GREATEST(expires_at, ${NOW_MS} + ?), expires_at),
    updated_at = ${NOW_MS} WHERE ${fenced}`,
    heartbeat: `UPDATE ${table} SET expires_at = GREATEST(expires_at, ${NOW_MS} + ?),
    lease_until = LAST_INSERT_ID(${NOW_MS} + ?), updated_at = ${NOW_MS}
  WHERE ${fenced}`,
    // One key added or replaced inside the fenced UPDATE: no read-modify-write.
    saveStep: `UPDATE ${table} SET steps = JSON_MERGE_PATCH(steps, JSON_OBJECT(?, ?)),
    updated_at = ${NOW_MS}
  WHERE ${fenced}`,
    get: `SELECT ${RECORD_COLUMNS} FROM ${table} WHERE \`key\` = ?`,
    delete: `DELETE FROM ${table} WHERE \`key\` = ?`,
    listPrefix: `SELECT ${RECORD_COLUMNS} FROM ${table}`,
    purgeAll: `DELETE FROM ${table} WHERE expires_at <= ${NOW_MS}`,
    purgeSome: `DELETE FROM ${table} WHERE expires_at <= ${NOW_MS} ORDER BY expires_at LIMIT ?`,
  };
}

/**
 * Statements of the `batch` option for `n` calls on distinct keys, sorted by key by the store.
 *
 *   begin batch ─ insertMany ─ ok ──────────────────────────► all acquired (1 round trip)
 *     (when most        └─ duplicate key ─┐
 *      recent keys                         ▼
 *      were new)     readMany ─ live ────────────────────────► existing
 *     (otherwise) ───►  ├─ no row ─► insertMany ─ ok ────────► acquired
 *                       │               └─ duplicate ─► insert, one key at a time
 *                       └─ not live ─► takeOver, one key at a time (as the single path)
 *
 * insertMany is one multi-row INSERT: atomic, so a duplicate key anywhere rolls the whole
 * statement back and no key of it is acquired. After a read, each of its keys then gets
 * its own INSERT (as the single path), so a contended batch still settles every key. The clock is read once per statement, so every row gets the same token
 * (LAST_INSERT_ID). Rows go in key order, so two batches take their locks in one order.
 *
 * finishMany is one multi-table UPDATE: a derived table of (key, token, kind, value, ttl)
 * rows, STRAIGHT_JOIN to the records by primary key (the derived table drives, in key order;
 * never a scan of the records), each row fenced by its own token and `in_progress`. It
 * reports how many rows matched, not which: when all or none did, that is the answer. Else
 * checkMany reads the keys back, and a key counts as written when it now holds the caller's
 * token, status and value with updated_at equal to this statement's clock reading (handed
 * back through LAST_INSERT_ID). The store trusts that only when exactly as many keys hold
 * the write as rows matched (see finishMany in mysql-store.ts).
 */
export function mysqlBatchStatements(table: string, n: number): MysqlBatchStatements {
  const list = Array.from({ length: n }, () => '?').join(', ');
  const row = `(?, ?, 'in_progress', LAST_INSERT_ID(${NOW_US}), 1, ${NOW_MS} + ?,
    GREATEST(${NOW_MS} + ?, ${NOW_MS} + ?), NULL, NULL, '{}', ${NOW_MS}, ${NOW_MS})`;
  const derived = Array.from({ length: n }, (_, i) =>
    i === 0
      ? 'SELECT CAST(? AS BINARY) AS k, ? AS tok, ? AS done, ? AS v, ? AS ttl'
      : 'SELECT CAST(? AS BINARY), ?, ?, ?, ?',
  ).join(' UNION ALL ');
  return {
    readMany: `SELECT ${RECORD_COLUMNS}, ${NOW_MS} AS now_ms FROM ${table} WHERE \`key\` IN (${list})`,
    insertMany: `INSERT INTO ${table} (\`key\`, fingerprint, status, token, attempts, lease_until,
    expires_at, result, error, steps, created_at, updated_at)
  VALUES ${Array.from({ length: n }, () => row).join(',\n    ')}`,
    finishMany: `UPDATE (${derived}) i STRAIGHT_JOIN ${table} r ON r.\`key\` = i.k AND r.token = i.tok
  SET r.status = IF(i.done = 1, 'completed', 'failed'),
    r.result = IF(i.done = 1, i.v, NULL),
    r.error = IF(i.done = 1, NULL, i.v),
    r.lease_until = 0,
    r.expires_at = ${NOW_MS} + i.ttl,
    r.updated_at = LAST_INSERT_ID(${NOW_MS})
  WHERE r.status = 'in_progress'`,
    checkMany: `SELECT \`key\`, token, status, updated_at, result, error FROM ${table}
  WHERE \`key\` IN (${list})`,
  };
}
