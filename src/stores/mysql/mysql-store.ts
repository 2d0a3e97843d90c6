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
import {
  checkFingerprint,
  checkKey,
  checkString,
  checkToken,
  durationArg,
  show,
} from './arguments.js';
import { isDuplicateKey, isTransientConflict, storeError } from './mysql-errors.js';
import { quoteIdentifier } from './mysql-identifier.js';
import type { MysqlQueryable, MysqlResultHeader, MysqlValue } from './mysql-queryable.js';
import { integerColumn, recordFromRow } from './mysql-record.js';
import { type MysqlSchemaStatus, createMysqlSchema } from './mysql-schema.js';
import { mysqlStatements } from './mysql-statements.js';

/** Options of {@link createMysqlStore}. */
export interface MysqlStoreOptions {
  /** Table of the records (default `reprocess_idempotency`): letters, digits, `_`; at most 48. */
  table?: string;
  /** Database of the table (default: the connection's current database). */
  database?: string;
  /**
   * Run the store's statements as server-side prepared statements through `execute` when the
   * pool has it (default true): parsed once per connection, which the server feels under load.
   * Set false behind a proxy that does not support the binary protocol.
   */
  preparedStatements?: boolean;
}

/** The MySQL/MariaDB store: an {@link IdempotencyStore} plus schema management. */
export interface MysqlStore extends IdempotencyStore {
  readonly name: 'mysql';
  /** The records table as written in SQL, e.g. `` `app`.`reprocess_idempotency` ``. */
  readonly table: string;
  /** Creates or upgrades the table, its purge index and its schema version table. */
  createSchema(): Promise<MysqlSchemaStatus>;
}

const DEFAULT_TABLE = 'reprocess_idempotency';
const DEFAULT_LIST_LIMIT = 100;
const MAX_LIST_LIMIT = 1000;
/** Rounds of begin when concurrent writers keep changing the record under it. */
const MAX_BEGIN_ROUNDS = 50;
/** Runs of one statement after a deadlock or lock wait timeout (it was rolled back whole). */
const MAX_CONFLICT_RUNS = 5;

const OK: FencedResult = { kind: 'ok' };
const LOST: FencedResult & HeartbeatResult = { kind: 'lease_lost' };

/**
 * An idempotency store on MySQL 8 or MariaDB 10.5 and later (InnoDB). Leases, expiry and
 * fencing tokens use the server's clock (`UTC_TIMESTAMP(6)` inside each statement). Every
 * write is one atomic conditional statement; `begin` reads first, so a replay is one
 * consistent read, and writes only when the read says the record may be acquired (see
 * mysql-statements.ts for the protocol and why).
 *
 * `db` is the caller's `mysql2/promise` pool (`mysql.createPool(...)`, or `.promise()` of a
 * callback pool); `close()` does not end it. Use a utf8mb4 connection charset (mysql2's
 * default) so every character round-trips.
 *
 * @example
 * ```ts
 * import mysql from 'mysql2/promise';
 * import { createMysqlStore } from 'reprocess/mysql';
 * const pool = mysql.createPool('mysql://app@db:3306/app');
 * const store = createMysqlStore(pool);
 * await store.createSchema();
 * ```
 */
export function createMysqlStore(db: MysqlQueryable, options: MysqlStoreOptions = {}): MysqlStore {
  if (typeof db !== 'object' || db === null || typeof db.query !== 'function') {
    throw new InvalidArgumentError(
      'createMysqlStore: pool must be a mysql2/promise pool or another object with query(sql, values)',
    );
  }
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('createMysqlStore: options must be an object');
  }
  const tableName = options.table ?? DEFAULT_TABLE;
  const quotedTable = quoteIdentifier('table', tableName, 48);
  const database =
    options.database === undefined ? undefined : quoteIdentifier('database', options.database, 64);
  const qualify = (name: string) => (database === undefined ? name : `${database}.${name}`);
  const table = qualify(quotedTable);
  const names = {
    table,
    versionTable: qualify(`\`${tableName}_schema_version\``),
    expiresIndex: `\`${tableName}_expires_at_idx\``,
  };
  const sql = mysqlStatements(table);
  const prepared = options.preparedStatements ?? true;
  if (typeof prepared !== 'boolean') {
    throw new InvalidArgumentError(
      `createMysqlStore: preparedStatements must be a boolean, got ${show(prepared)}`,
    );
  }
  const execute = prepared && typeof db.execute === 'function' ? db.execute.bind(db) : undefined;
  const send = (text: string, values: MysqlValue[]) =>
    execute ? execute(text, values) : db.query(text, values);

  /** Runs one statement, again after a deadlock; driver errors become StoreUnavailableError. */
  async function query(
    operation: string,
    text: string,
    values: MysqlValue[] = [],
  ): Promise<unknown> {
    for (let run = 1; ; run++) {
      try {
        const [result] = await send(text, values);
        return result;
      } catch (error) {
        if (run < MAX_CONFLICT_RUNS && isTransientConflict(error)) continue;
        throw storeError(operation, error);
      }
    }
  }

  async function rows(operation: string, text: string, values: MysqlValue[]): Promise<unknown[]> {
    const result = await query(operation, text, values);
    if (!Array.isArray(result)) {
      throw new StoreUnavailableError(`mysql store: ${operation} got no rows from the server`);
    }
    return result;
  }

  async function write(operation: string, text: string, values: MysqlValue[]) {
    return (await query(operation, text, values)) as MysqlResultHeader;
  }

  async function fencedWrite(operation: string, text: string, values: MysqlValue[]) {
    return matchedRows(await write(operation, text, values)) > 0 ? OK : LOST;
  }

  /** One round of begin; undefined when the record changed under it (run another). */
  async function beginRound(
    key: string,
    fingerprint: string,
    leaseMs: number,
    ttlMs: number,
  ): Promise<BeginResult | undefined> {
    const [row] = await rows('begin', sql.read, [fingerprint, key]);
    if (row !== undefined && Number((row as { live?: unknown }).live) === 1) {
      return { kind: 'existing', record: recordFromRow(row) };
    }

    if (row === undefined) {
      let header: MysqlResultHeader;
      try {
        header = (
          await send(sql.insert, [key, fingerprint, leaseMs, ttlMs, leaseMs])
        )[0] as MysqlResultHeader;
      } catch (error) {
        // Another caller inserted it first: read what it wrote.
        if (isDuplicateKey(error) || isTransientConflict(error)) return undefined;
        throw storeError('begin', error);
      }
      const token = integerColumn(key, 'token', header.insertId);
      if (token <= 0) throw new StoreUnavailableError('mysql store: begin got no token back');
      return {
        kind: 'acquired',
        token,
        leaseUntil: Math.floor(token / 1000) + leaseMs,
        attempts: 1,
        steps: {},
        takeover: false,
      };
    }

    const header = await write('begin', sql.takeOver, [
      fingerprint,
      leaseMs,
      ttlMs,
      leaseMs,
      leaseMs,
      key,
      fingerprint,
    ]);
    if (matchedRows(header) === 0) return undefined;
    const token = integerColumn(key, 'token', header.insertId);
    // The row is ours under `token`: nothing but this holder can change it now.
    const [held] = await rows('begin', sql.readHeld, [key, token]);
    if (held === undefined) return undefined; // lost already (a tiny lease): start over
    const record = recordFromRow(held);
    return {
      kind: 'acquired',
      token,
      leaseUntil: record.leaseUntil,
      attempts: record.attempts,
      steps: record.steps,
      // A new or expired record starts at 1; only a takeover of a live record counts on.
      takeover: record.attempts > 1,
    };
  }

  const store: MysqlStore = {
    name: 'mysql',
    table,

    async begin(key, fingerprint, leaseMs, ttlMs) {
      checkKey(key);
      checkFingerprint(fingerprint);
      const lease = durationArg('leaseMs', leaseMs);
      const ttl = durationArg('ttlMs', ttlMs);
      for (let round = 1; round <= MAX_BEGIN_ROUNDS; round++) {
        const outcome = await beginRound(key, fingerprint, lease, ttl);
        if (outcome !== undefined) return outcome;
      }
      throw new StoreUnavailableError(
        `mysql store: begin(${show(key)}) found the record changing under it ${MAX_BEGIN_ROUNDS} times in a row`,
      );
    },

    async complete(key, token, result, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('result', result);
      return fencedWrite('complete', sql.complete, [
        result,
        durationArg('ttlMs', ttlMs),
        key,
        token,
      ]);
    },

    async fail(key, token, error, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('error', error);
      return fencedWrite('fail', sql.fail, [error, durationArg('ttlMs', ttlMs), key, token]);
    },

    async release(key, token) {
      checkKey(key);
      checkToken(token);
      return fencedWrite('release', sql.release, [key, token]);
    },

    async heartbeat(key, token, leaseMs): Promise<HeartbeatResult> {
      checkKey(key);
      checkToken(token);
      const lease = durationArg('leaseMs', leaseMs);
      const header = await write('heartbeat', sql.heartbeat, [lease, lease, key, token]);
      if (matchedRows(header) === 0) return LOST;
      return { kind: 'ok', leaseUntil: integerColumn(key, 'lease_until', header.insertId) };
    },

    async saveStep(key, token, name, result) {
      checkKey(key);
      checkToken(token);
      checkString('step name', name);
      checkString('step result', result);
      return fencedWrite('saveStep', sql.saveStep, [name, result, key, token]);
    },

    async get(key) {
      checkKey(key);
      const [row] = await rows('get', sql.get, [key]);
      return row === undefined ? undefined : recordFromRow(row);
    },

    async delete(key) {
      checkKey(key);
      return ((await write('delete', sql.delete, [key])).affectedRows ?? 0) > 0;
    },

    async list(listOptions: ListOptions = {}): Promise<ListPage> {
      const status = listOptions.status;
      if (
        status !== undefined &&
        status !== 'in_progress' &&
        status !== 'completed' &&
        status !== 'failed'
      ) {
        throw new InvalidArgumentError(
          `mysql store: list status must be in_progress, completed or failed, got ${show(status)}`,
        );
      }
      const limit = listLimit(listOptions.limit);
      const conditions: string[] = [];
      const values: MysqlValue[] = [];
      if (status !== undefined) {
        conditions.push('status = ?');
        values.push(status);
      }
      if (listOptions.cursor !== undefined) {
        // Binary comparison: VARBINARY keys sort by UTF-8 bytes, i.e. by code point.
        conditions.push('`key` > ?');
        values.push(decodeCursor(listOptions.cursor));
      }
      const where = conditions.length === 0 ? '' : ` WHERE ${conditions.join(' AND ')}`;
      const found = await rows('list', `${sql.listPrefix}${where} ORDER BY \`key\` LIMIT ?`, [
        ...values,
        limit + 1,
      ]);
      const records: IdempotencyRecord[] = found.slice(0, limit).map(recordFromRow);
      const last = records[records.length - 1];
      return found.length > limit && last !== undefined
        ? { records, cursor: encodeCursor(last.key) }
        : { records };
    },

    async purgeExpired(purgeOptions: { limit?: number } = {}) {
      const limit = purgeOptions.limit;
      if (limit === undefined) {
        return (await write('purgeExpired', sql.purgeAll, [])).affectedRows ?? 0;
      }
      if (!Number.isInteger(limit) || limit < 0) {
        throw new InvalidArgumentError(
          `mysql store: purgeExpired limit must be an integer >= 0, got ${show(limit)}`,
        );
      }
      if (limit === 0) return 0;
      return (await write('purgeExpired', sql.purgeSome, [limit])).affectedRows ?? 0;
    },

    createSchema: () => createMysqlSchema(db, names),

    async close() {
      // The pool is the caller's: nothing of the store's own to release.
    },
  };
  return store;
}

/**
 * Rows an UPDATE matched (not only changed: a release or a step saved twice in one
 * millisecond changes nothing yet must count). mysql2 reports matched rows as
 * `affectedRows` under its default FOUND_ROWS flag; `info` says it whatever the flags.
 */
function matchedRows(header: MysqlResultHeader): number {
  const matched = /Rows matched: (\d+)/.exec(header.info ?? '');
  if (matched?.[1] !== undefined) return Number(matched[1]);
  return header.affectedRows ?? 0;
}

function listLimit(limit: unknown): number {
  if (limit === undefined) return DEFAULT_LIST_LIMIT;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(
      `mysql store: list limit must be an integer >= 1, got ${show(limit)}`,
    );
  }
  return Math.min(limit, MAX_LIST_LIMIT);
}

/** Cursors are the last key of a page, base64url: opaque to callers, exact for `key > ?`. */
function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

function decodeCursor(cursor: unknown): string {
  if (typeof cursor !== 'string' || cursor.length === 0 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new InvalidArgumentError(
      `mysql store: list cursor must come from a previous page, got ${show(cursor)}`,
    );
  }
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (encodeCursor(key) !== cursor) {
    throw new InvalidArgumentError('mysql store: list cursor is not one this store issued');
  }
  return key;
}
