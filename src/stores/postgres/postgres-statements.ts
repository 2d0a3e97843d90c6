/*
 * Every statement of the PostgreSQL store, for one (validated, quoted) table name. Each state
 * transition is ONE statement; values always travel as parameters.
 *
 * The clock. Every statement reads the server's clock once, in the `clock` CTE, and uses that
 * one reading for every time it writes (lease, expiry, created/updated, token floor).
 * `clock_timestamp()`, not `now()`: `now()` is frozen at the start of the enclosing
 * transaction, so a store handed a client inside a long transaction (a PgQueryable may be
 * one) would lease from a stale time and, after a delete, could issue a token below one
 * issued meanwhile by another connection. `clock_timestamp()` is the time the statement runs.
 *
 * Tokens are `GREATEST(previous + 1, now in microseconds)`: greater than the previous token
 * while the row exists, and greater than any token issued before a delete or purge because
 * the floor is the clock (a deleted row takes its previous token with it).
 */

/** Columns of a record in the order the store reads them; `steps` as text, parsed by the store. */
export const RECORD_COLUMNS =
  'key, fingerprint, status, token, attempts, lease_until, expires_at, result, error, steps::text AS steps, created_at, updated_at';

const CLOCK = `clock AS (
    SELECT c.us, c.us / 1000 AS ms
    FROM (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) c
  )`;

/**
 * A row no store writes: a token past 2^53, attempts at the column's maximum. Its + 1 would
 * fail the whole statement (every key of a batch with it), so begin never writes it: it is
 * answered as it stands (the `live` row), and reading it is RecordCorruptError for its own
 * call only.
 */
const UNWRITABLE = 'r.token >= 9007199254740991 OR r.attempts >= 2147483647';

/**
 * The ON CONFLICT branch shared by the single and batched begin. `r` is the stored row,
 * `excluded` the row begin proposed (its `created_at` is the statement's clock reading).
 * An expired record is replaced by a new operation (steps dropped, attempts 1); a live one
 * whose lease ended, with the same fingerprint, is taken over (steps kept, attempts + 1).
 * The WHERE is the acquire condition evaluated on the LATEST row version, after the row lock.
 */
const ACQUIRE_ON_CONFLICT = `ON CONFLICT (key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    status = 'in_progress',
    token = GREATEST(r.token + 1, excluded.token),
    attempts = CASE WHEN r.expires_at <= excluded.created_at THEN 1 ELSE r.attempts + 1 END,
    lease_until = excluded.lease_until,
    expires_at = CASE WHEN r.expires_at <= excluded.created_at THEN excluded.expires_at
                      ELSE GREATEST(r.expires_at, excluded.lease_until) END,
    result = NULL,
    error = NULL,
    steps = CASE WHEN r.expires_at <= excluded.created_at THEN '{}'::jsonb ELSE r.steps END,
    created_at = CASE WHEN r.expires_at <= excluded.created_at THEN excluded.created_at
                      ELSE r.created_at END,
    updated_at = excluded.updated_at
  WHERE (r.expires_at <= excluded.created_at
     OR (r.status = 'in_progress' AND r.lease_until <= excluded.created_at
         AND r.fingerprint = excluded.fingerprint))
    AND NOT (${UNWRITABLE})`;

const RETURNING = `RETURNING r.key, r.fingerprint, r.status, r.token, r.attempts, r.lease_until,
    r.expires_at, r.result, r.error, r.steps::text AS steps, r.created_at, r.updated_at`;

/** The SQL of one store table. */
export interface PostgresStatements {
  /** $1 key, $2 fingerprint, $3 lease ms, $4 ttl ms → rows of (acquired, ...record). */
  begin: string;
  /** $1 keys[], $2 fingerprints[], $3 lease ms[], $4 ttl ms[] (distinct keys) → (acquired, ...record) per answered key. */
  beginMany: string;
  /** $1 key, $2 token, $3 result, $4 ttl ms → rowCount 1 when written. */
  complete: string;
  /** $1 keys[], $2 tokens[], $3 results[], $4 ttl ms[] (distinct keys) → the keys written. */
  completeMany: string;
  /** $1 key, $2 token, $3 error, $4 ttl ms. */
  fail: string;
  /** $1 key, $2 token. */
  release: string;
  /** $1 key, $2 token, $3 lease ms → lease_until when written. */
  heartbeat: string;
  /** $1 key, $2 token, $3 step name, $4 step result. */
  saveStep: string;
  /** $1 key. */
  get: string;
  /** $1 key. */
  delete: string;
  /** $1 status or null, $2 cursor key or null, $3 limit. */
  list: string;
  /** No parameters. */
  purgeAll: string;
  /** $1 limit. */
  purgeSome: string;
}

/** Builds the statements for `table`, a validated and quoted (optionally schema-qualified) name. */
export function postgresStatements(table: string): PostgresStatements {
  /*
   * begin, as one statement. Race closed: a conditional write that fails and is followed by a
   * separate SELECT can read a record that changed or vanished in between (and a replay would
   * pay two round trips). Here the existing record comes back in the same statement:
   *
   *   live: the stored record when it must NOT be acquired (unexpired, and not an ended lease
   *         of the same fingerprint), read from the statement's snapshot. Nothing is written
   *         then, so a replay is a plain index read: no row lock, no WAL, no commit flush.
   *   acq:  otherwise INSERT ... ON CONFLICT DO UPDATE ... WHERE <acquirable>, which locks the
   *         latest row version and re-evaluates the condition on it, so of any number of
   *         concurrent callers exactly one acquires.
   *
   * The answer is the `acq` row (acquired) or the `live` row (existing). A `live` row is valid
   * at the snapshot: it was not acquirable at the clock reading, which is not earlier than
   * the snapshot, and a record only becomes MORE acquirable as time passes. No row at all
   * means a concurrent writer changed the record after the snapshot (an insert the snapshot
   * cannot see, or a takeover that made the WHERE false): the store runs the statement again,
   * with a new snapshot that sees it.
   */
  const begin = `WITH ${CLOCK},
  live AS (
    SELECT r.* FROM ${table} r, clock
    WHERE r.key = $1::text AND (${UNWRITABLE} OR (r.expires_at > clock.ms
      AND NOT (r.status = 'in_progress' AND r.lease_until <= clock.ms AND r.fingerprint = $2::text)))
  ),
  acq AS (
    INSERT INTO ${table} AS r (key, fingerprint, status, token, attempts, lease_until, expires_at,
                               result, error, steps, created_at, updated_at)
    SELECT $1::text, $2::text, 'in_progress', clock.us, 1, clock.ms + $3::bigint,
           GREATEST(clock.ms + $4::bigint, clock.ms + $3::bigint), NULL, NULL, '{}'::jsonb,
           clock.ms, clock.ms
    FROM clock WHERE NOT EXISTS (SELECT 1 FROM live)
    ${ACQUIRE_ON_CONFLICT}
    ${RETURNING}
  )
  SELECT true AS acquired, * FROM acq
  UNION ALL
  SELECT false AS acquired, key, fingerprint, status, token, attempts, lease_until, expires_at,
         result, error, steps::text, created_at, updated_at FROM live`;

  /*
   * begin for many distinct keys in one statement: the same `live`/`acq` logic per key. Rows
   * are inserted in key order so two concurrent batches lock rows in the same order and
   * cannot deadlock each other. A key with no answer row goes back to the queue (see above).
   * A key must appear at most once: ON CONFLICT cannot touch one row twice in a statement.
   */
  const beginMany = `WITH ${CLOCK},
  input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
      AS i(key, fingerprint, lease_ms, ttl_ms)
  ),
  live AS (
    SELECT r.* FROM input i JOIN ${table} r ON r.key = i.key CROSS JOIN clock
    WHERE ${UNWRITABLE} OR (r.expires_at > clock.ms
      AND NOT (r.status = 'in_progress' AND r.lease_until <= clock.ms AND r.fingerprint = i.fingerprint))
  ),
  acq AS (
    INSERT INTO ${table} AS r (key, fingerprint, status, token, attempts, lease_until, expires_at,
                               result, error, steps, created_at, updated_at)
    SELECT i.key, i.fingerprint, 'in_progress', clock.us, 1, clock.ms + i.lease_ms,
           GREATEST(clock.ms + i.ttl_ms, clock.ms + i.lease_ms), NULL, NULL, '{}'::jsonb,
           clock.ms, clock.ms
    FROM input i CROSS JOIN clock
    WHERE NOT EXISTS (SELECT 1 FROM live WHERE live.key = i.key)
    ORDER BY i.key COLLATE "C"
    ${ACQUIRE_ON_CONFLICT}
    ${RETURNING}
  )
  SELECT true AS acquired, * FROM acq
  UNION ALL
  SELECT false AS acquired, key, fingerprint, status, token, attempts, lease_until, expires_at,
         result, error, steps::text, created_at, updated_at FROM live`;

  // Fenced writes: only while the stored token is the caller's and the record is in progress.
  const fenced = `r.key = $1::text AND r.token = $2::bigint AND r.status = 'in_progress'`;

  return {
    begin,
    beginMany,
    complete: `WITH ${CLOCK}
  UPDATE ${table} AS r SET status = 'completed', result = $3::text, error = NULL, lease_until = 0,
    expires_at = clock.ms + $4::bigint, updated_at = clock.ms
  FROM clock WHERE ${fenced}`,
    completeMany: `WITH ${CLOCK},
  input AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
      AS i(key, token, result, ttl_ms)
    ORDER BY key COLLATE "C"
  )
  UPDATE ${table} AS r SET status = 'completed', result = i.result, error = NULL, lease_until = 0,
    expires_at = clock.ms + i.ttl_ms, updated_at = clock.ms
  FROM input i CROSS JOIN clock
  WHERE r.key = i.key AND r.token = i.token AND r.status = 'in_progress'
  RETURNING r.key`,
    fail: `WITH ${CLOCK}
  UPDATE ${table} AS r SET status = 'failed', result = NULL, error = $3::text, lease_until = 0,
    expires_at = clock.ms + $4::bigint, updated_at = clock.ms
  FROM clock WHERE ${fenced}`,
    // $3: keep the record at least this long from now (0: leave the expiry as it is, even
    // one already passed).
    release: `WITH ${CLOCK}
  UPDATE ${table} AS r SET lease_until = 0,
    expires_at = CASE WHEN $3::bigint > 0
      THEN GREATEST(r.expires_at, clock.ms + $3::bigint) ELSE r.expires_at END,
    updated_at = clock.ms
  FROM clock WHERE ${fenced}`,
    heartbeat: `WITH ${CLOCK}
  UPDATE ${table} AS r SET lease_until = clock.ms + $3::bigint,
    expires_at = GREATEST(r.expires_at, clock.ms + $3::bigint), updated_at = clock.ms
  FROM clock WHERE ${fenced}
  RETURNING r.lease_until`,
    // jsonb || adds or replaces one key inside the same fenced UPDATE: no read-modify-write.
    saveStep: `WITH ${CLOCK}
  UPDATE ${table} AS r SET steps = r.steps || jsonb_build_object($3::text, $4::text),
    updated_at = clock.ms
  FROM clock WHERE ${fenced}`,
    get: `SELECT ${RECORD_COLUMNS} FROM ${table} WHERE key = $1::text`,
    delete: `DELETE FROM ${table} WHERE key = $1::text`,
    list: `SELECT ${RECORD_COLUMNS} FROM ${table}
  WHERE ($1::text IS NULL OR status = $1::text) AND ($2::text IS NULL OR key > $2::text)
  ORDER BY key LIMIT $3::int`,
    purgeAll: `WITH ${CLOCK}
  DELETE FROM ${table} AS r USING clock WHERE r.expires_at <= clock.ms`,
    // SKIP LOCKED: rows a begin is taking over right now are not waited for; the DELETE
    // re-checks expiry on the latest version, so a record acquired meanwhile survives.
    purgeSome: `WITH ${CLOCK},
  doomed AS (
    SELECT r.key FROM ${table} r, clock WHERE r.expires_at <= clock.ms
    ORDER BY r.expires_at LIMIT $1::int FOR UPDATE OF r SKIP LOCKED
  )
  DELETE FROM ${table} AS r USING doomed, clock
  WHERE r.key = doomed.key AND r.expires_at <= clock.ms`,
  };
}
