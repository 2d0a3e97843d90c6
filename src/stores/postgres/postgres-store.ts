import { createHash } from 'node:crypto';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  ListPage,
} from '../../idempotency/store.js';
import { checkKey, checkText, checkToken, durationArg } from './arguments.js';
import { batchedCalls } from '../key-batcher.js';
import type { PgQueryable, PgQueryResult } from './pg-queryable.js';
import { isTransientConflict, storeError } from './postgres-errors.js';
import { integerColumn, recordFromRow } from './postgres-record.js';
import { type SchemaStatus, createPostgresSchema } from './postgres-schema.js';
import { postgresStatements } from './postgres-statements.js';
import { quoteIdentifier } from './sql-identifier.js';
import { batchSettings } from '../batch-options.js';
import { decodeKeyCursor, encodeKeyCursor, listLimit, listStatus } from '../list-options.js';
import { showValue } from '../show-value.js';
import { acquiredRecord } from '../acquired-record.js';

/** Options of {@link createPostgresStore}. */
export interface PostgresStoreOptions {
  /** Table of the records (default `reprocess_idempotency`): letters, digits, `_`; at most 48. */
  table?: string;
  /** Schema of the table (default: the connection's search_path). */
  schema?: string;
  /**
   * Batch concurrent `begin` and `complete` calls on distinct keys into one statement each
   * (default true). It pays when many operations are in flight on one store object: each
   * statement then carries many operations (see `npm run bench:stores`); a call alone in its
   * tick goes at once, as its own statement. Guarantees are the same: a batch never holds one
   * key twice, and each key is decided as if alone. `false`: one statement per call.
   */
  batch?: boolean | BatchOptions;
  /**
   * Run the store's statements as named prepared statements (default true): each is parsed
   * and planned once per connection, which roughly halves the server's work for `begin`.
   * Set false behind a pooler that cannot keep prepared statements across transactions
   * (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
}

/** Tuning of {@link PostgresStoreOptions.batch}. */
export interface BatchOptions {
  /** Most operations in one statement (default 64). */
  maxBatchSize?: number;
  /** Most batch statements running at once, per kind (default 4). Keep below the pool size. */
  maxInFlight?: number;
}

/** The PostgreSQL store: an {@link IdempotencyStore} plus schema management. */
export interface PostgresStore extends IdempotencyStore {
  readonly name: 'postgres';
  /** The records table as written in SQL, e.g. `"billing"."reprocess_idempotency"`. */
  readonly table: string;
  /** Creates or upgrades the table, its purge index and its schema version table. */
  createSchema(): Promise<SchemaStatus>;
}

const DEFAULT_TABLE = 'reprocess_idempotency';
/** Rounds of begin when concurrent writers keep changing the record under it (see begin). */
const MAX_BEGIN_ROUNDS = 50;
/** Runs of one statement after a deadlock or serialization failure (it was rolled back whole). */
const MAX_CONFLICT_RUNS = 5;

type BeginInput = { key: string; fingerprint: string; leaseMs: number; ttlMs: number };
type CompleteInput = { key: string; token: number; result: string; ttlMs: number };
/** The statement gave no answer row for the key: the record changed after its snapshot. */
const AGAIN = Symbol('again');
/** A begin's answer; an Error (an unreadable record) is its own call's, never its batch's. */
type BeginOutcome = BeginResult | typeof AGAIN | Error;

/**
 * An idempotency store on PostgreSQL (11 or later). Every transition is one statement;
 * leases, expiry and fencing tokens use the server's clock. `begin` is a single
 * `INSERT ... ON CONFLICT DO UPDATE ... WHERE` that also returns the existing record, so a
 * replay costs one round trip and writes nothing.
 *
 * `db` is the caller's `pg.Pool` (or anything with pg's `query(text, values)`); `close()`
 * does not end it. Give the pool an `error` listener: pg emits one when an idle connection
 * dies, and an unlistened `error` event ends the process.
 *
 * @example
 * ```ts
 * import pg from 'pg';
 * import { createPostgresStore } from 'reprocess/postgres';
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * pool.on('error', () => {}); // a dead idle connection is dropped and replaced
 * const store = createPostgresStore(pool, { schema: 'billing' });
 * await store.createSchema();
 * ```
 */
export function createPostgresStore(
  db: PgQueryable,
  options: PostgresStoreOptions = {},
): PostgresStore {
  if (typeof db !== 'object' || db === null || typeof db.query !== 'function') {
    throw new InvalidArgumentError(
      'createPostgresStore: pool must be a pg.Pool or another object with query(text, values)',
    );
  }
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('createPostgresStore: options must be an object');
  }
  const tableName = options.table ?? DEFAULT_TABLE;
  const quotedTable = quoteIdentifier('table', tableName, 48);
  const schema =
    options.schema === undefined ? undefined : quoteIdentifier('schema', options.schema, 63);
  const qualify = (name: string) => (schema === undefined ? name : `${schema}.${name}`);
  const table = qualify(quotedTable);
  const schemaNames = {
    schema,
    table,
    versionTable: qualify(`"${tableName}_schema_version"`),
    expiresIndex: `"${tableName}_expires_at_idx"`,
  };
  const sql = postgresStatements(table);
  const batching = batchSettings('createPostgresStore', options.batch ?? true, {
    maxBatchSize: 64,
    maxInFlight: 4,
  });
  const prepared = options.preparedStatements ?? true;
  if (typeof prepared !== 'boolean') {
    throw new InvalidArgumentError(
      `createPostgresStore: preparedStatements must be a boolean, got ${showValue(prepared)}`,
    );
  }
  // pg keeps one prepared statement per name and connection: the name carries a hash of the
  // text, so two stores on different tables never ask one name for two texts.
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (name === undefined) {
      name = `reprocess_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
      names.set(text, name);
    }
    return name;
  };

  /** Runs one statement, again after a deadlock; driver errors become StoreUnavailableError. */
  async function query(operation: string, text: string, values: unknown[] = []) {
    for (let run = 1; ; run++) {
      try {
        return await (prepared
          ? db.query({ name: nameOf(text), text, values })
          : db.query(text, values));
      } catch (error) {
        if (run < MAX_CONFLICT_RUNS && isTransientConflict(error)) continue;
        throw storeError(operation, error);
      }
    }
  }

  async function beginOne(input: BeginInput): Promise<BeginOutcome> {
    const result = await query('begin', sql.begin, [
      input.key,
      input.fingerprint,
      input.leaseMs,
      input.ttlMs,
    ]);
    return beginOutcome(result.rows[0]);
  }

  async function beginMany(inputs: BeginInput[]): Promise<BeginOutcome[]> {
    const result = await query('begin', sql.beginMany, [
      inputs.map((i) => i.key),
      inputs.map((i) => i.fingerprint),
      inputs.map((i) => i.leaseMs),
      inputs.map((i) => i.ttlMs),
    ]);
    const byKey = new Map<string, unknown>();
    for (const row of result.rows) byKey.set((row as { key: string }).key, row);
    // One unreadable record fails its own begin only: the statement has already claimed the
    // other keys of the batch, and their callers must learn that they hold them.
    return inputs.map((i) => {
      try {
        return beginOutcome(byKey.get(i.key));
      } catch (error) {
        return error instanceof Error ? error : new Error(String(error));
      }
    });
  }

  async function completeOne(input: CompleteInput): Promise<FencedResult> {
    const result = await query('complete', sql.complete, [
      input.key,
      input.token,
      input.result,
      input.ttlMs,
    ]);
    return fenced(result);
  }

  async function completeMany(inputs: CompleteInput[]): Promise<FencedResult[]> {
    const result = await query('complete', sql.completeMany, [
      inputs.map((i) => i.key),
      inputs.map((i) => i.token),
      inputs.map((i) => i.result),
      inputs.map((i) => i.ttlMs),
    ]);
    const written = new Set(result.rows.map((row) => (row as { key: string }).key));
    return inputs.map((i) => (written.has(i.key) ? OK : LOST));
  }

  const begins = batchedCalls(batching, beginOne, beginMany);
  const completes = batchedCalls(batching, completeOne, completeMany);

  async function fencedWrite(operation: string, text: string, values: unknown[]) {
    return fenced(await query(operation, text, values));
  }

  const store: PostgresStore = {
    name: 'postgres',
    table,

    async begin(key, fingerprint, leaseMs, ttlMs) {
      checkKey(key);
      checkText('fingerprint', fingerprint);
      const input: BeginInput = {
        key,
        fingerprint,
        leaseMs: durationArg('leaseMs', leaseMs),
        ttlMs: durationArg('ttlMs', ttlMs),
      };
      for (let round = 1; round <= MAX_BEGIN_ROUNDS; round++) {
        const outcome = await begins.run(input);
        if (outcome instanceof Error) throw outcome;
        if (outcome !== AGAIN) return outcome;
      }
      throw new StoreUnavailableError(
        `postgres store: begin(${showValue(key)}) found the record changing under it ${MAX_BEGIN_ROUNDS} times in a row`,
      );
    },

    async complete(key, token, result, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkText('result', result);
      const input = { key, token, result, ttlMs: durationArg('ttlMs', ttlMs) };
      return completes.run(input);
    },

    async fail(key, token, error, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkText('error', error);
      return fencedWrite('fail', sql.fail, [key, token, error, durationArg('ttlMs', ttlMs)]);
    },

    async release(key, token, ttlMs) {
      checkKey(key);
      checkToken(token);
      const keep = ttlMs === undefined ? 0 : durationArg('ttlMs', ttlMs);
      return fencedWrite('release', sql.release, [key, token, keep]);
    },

    async heartbeat(key, token, leaseMs): Promise<HeartbeatResult> {
      checkKey(key);
      checkToken(token);
      const result = await query('heartbeat', sql.heartbeat, [
        key,
        token,
        durationArg('leaseMs', leaseMs),
      ]);
      const row = result.rows[0] as { lease_until?: unknown } | undefined;
      if (row === undefined) return LOST;
      return { kind: 'ok', leaseUntil: integerColumn(key, 'lease_until', row.lease_until) };
    },

    async saveStep(key, token, name, result) {
      checkKey(key);
      checkToken(token);
      checkText('step name', name);
      checkText('step result', result);
      return fencedWrite('saveStep', sql.saveStep, [key, token, name, result]);
    },

    async get(key) {
      checkKey(key);
      const result = await query('get', sql.get, [key]);
      return result.rows.length === 0 ? undefined : recordFromRow(result.rows[0]);
    },

    async delete(key) {
      checkKey(key);
      const result = await query('delete', sql.delete, [key]);
      return (result.rowCount ?? 0) > 0;
    },

    async list(listOptions: ListOptions = {}): Promise<ListPage> {
      const status = listStatus(STORE, listOptions.status) ?? null;
      const limit = listLimit(STORE, listOptions.limit);
      const after =
        listOptions.cursor === undefined ? null : decodeKeyCursor(STORE, listOptions.cursor);
      const result = await query('list', sql.list, [status, after, limit + 1]);
      const records: IdempotencyRecord[] = result.rows.slice(0, limit).map(recordFromRow);
      const last = records[records.length - 1];
      return result.rows.length > limit && last !== undefined
        ? { records, cursor: encodeKeyCursor(last.key) }
        : { records };
    },

    async purgeExpired(purgeOptions: { limit?: number } = {}) {
      const limit = purgeOptions.limit;
      if (limit === undefined) return (await query('purgeExpired', sql.purgeAll)).rowCount ?? 0;
      if (!Number.isInteger(limit) || limit < 0) {
        throw new InvalidArgumentError(
          `postgres store: purgeExpired limit must be an integer >= 0, got ${showValue(limit)}`,
        );
      }
      if (limit === 0) return 0;
      return (await query('purgeExpired', sql.purgeSome, [limit])).rowCount ?? 0;
    },

    createSchema: () => createPostgresSchema(db, schemaNames),

    async close() {
      // The pool is the caller's; only wait for batches still running.
      await Promise.all([begins.settled(), completes.settled()]);
    },
  };
  return store;
}

const OK: FencedResult = { kind: 'ok' };
const LOST: FencedResult & HeartbeatResult = { kind: 'lease_lost' };

/** The name list errors give. */
const STORE = 'postgres store';

function fenced(result: PgQueryResult): FencedResult {
  return (result.rowCount ?? 0) > 0 ? OK : LOST;
}

/** One answer row of begin (acquired or existing), or AGAIN when there was none. */
function beginOutcome(row: unknown): BeginOutcome {
  if (row === undefined) return AGAIN;
  const record = recordFromRow(row);
  if ((row as { acquired?: unknown }).acquired !== true) return { kind: 'existing', record };
  // A new or expired record starts at 1; only a takeover of a live record counts on.
  return acquiredRecord(record, record.attempts > 1);
}
