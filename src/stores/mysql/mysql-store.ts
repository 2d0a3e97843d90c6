import {
  ErrorCode,
  InvalidArgumentError,
  ResultNotStorableError,
  StoreUnavailableError,
} from '../../errors.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  ListPage,
} from '../../idempotency/store.js';
import { checkFingerprint, checkKey, checkString, checkToken, durationArg } from './arguments.js';
import { batchedCalls } from '../key-batcher.js';
import { isDuplicateKey, isTransientConflict, storeError } from './mysql-errors.js';
import { quoteIdentifier } from './mysql-identifier.js';
import type { MysqlQueryable, MysqlResultHeader, MysqlValue } from './mysql-queryable.js';
import { integerColumn, recordFromRow, textColumn } from './mysql-record.js';
import { type MysqlSchemaStatus, createMysqlSchema } from './mysql-schema.js';
import {
  type MysqlBatchStatements,
  mysqlBatchStatements,
  mysqlStatements,
} from './mysql-statements.js';
import { batchSettings } from '../batch-options.js';
import { BeginOrder } from '../begin-order.js';
import { decodeKeyCursor, encodeKeyCursor, listLimit, listStatus } from '../list-options.js';
import { showValue } from '../show-value.js';

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
  /**
   * Batch concurrent `begin` calls, and concurrent `complete`/`fail` calls, on distinct keys
   * into one statement each (default true). It pays when many operations are in flight on one
   * store object (see `npm run bench:stores`); a call alone in its tick goes at once, as its
   * own statement. Guarantees are the same: a batch never holds one key twice, and each key is
   * decided as if alone. `false`: one statement per call.
   */
  batch?: boolean | MysqlBatchOptions;
}

/** Tuning of {@link MysqlStoreOptions.batch}. */
export interface MysqlBatchOptions {
  /** Most operations in one statement (default 64). */
  maxBatchSize?: number;
  /** Most batch statements running at once, per kind (default 4). Keep below the pool size. */
  maxInFlight?: number;
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
/** Rounds of begin when concurrent writers keep changing the record under it. */
const MAX_BEGIN_ROUNDS = 50;
/** Runs of one statement after a deadlock or lock wait timeout (it was rolled back whole). */
const MAX_CONFLICT_RUNS = 5;

/**
 * A result or error longer than this (in characters) is completed alone, never in a batch, so
 * one huge value cannot fail the others; the values of one batch together are bounded by
 * {@link MAX_BATCH_VALUE_BYTES}, far below max_allowed_packet (1 MiB on the smallest servers).
 */
const MAX_BATCHED_VALUE = 4096;
/** Most bytes the values and keys of one batched statement may take (UTF-8, counted high). */
const MAX_BATCH_VALUE_BYTES = 256 * 1024;
/** Values from this many UTF-16 units on are checked against max_allowed_packet first. */
const LARGE_VALUE = 256 * 1024;
/** Room for the statement around a value: its text, the other parameters, the protocol. */
const STATEMENT_BYTES = 4096;

const OK: FencedResult = { kind: 'ok' };
const LOST: FencedResult & HeartbeatResult = { kind: 'lease_lost' };

type BeginInput = { key: string; fingerprint: string; leaseMs: number; ttlMs: number };
type FinishInput = { key: string; token: number; done: boolean; value: string; ttlMs: number };
/** The record changed under this round: run another. */
const AGAIN = Symbol('again');
/** An Error is that call's own failure in a batch (e.g. its record is corrupt): thrown to it. */
type BeginOutcome = BeginResult | typeof AGAIN | Error;
/** A finish whose outcome could not be told apart (see finishMany): thrown to its caller. */
type FinishOutcome = FencedResult | StoreUnavailableError;

/**
 * An idempotency store on MySQL 8 or MariaDB 10.5 and later (InnoDB). Leases, expiry and
 * fencing tokens use the server's clock (`UTC_TIMESTAMP(6)` inside each statement). Every
 * write is one atomic conditional statement. `begin` reads first while most keys it sees
 * exist (a replay is one consistent read) and inserts first while most are new (a new key is
 * one INSERT); see mysql-statements.ts for the protocol and why. With `batch`, concurrent
 * calls share statements.
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
      `createMysqlStore: preparedStatements must be a boolean, got ${showValue(prepared)}`,
    );
  }
  const batching = batchSettings(
    'createMysqlStore',
    options.batch ?? true,
    { maxBatchSize: 64, maxInFlight: 4 },
    1000,
  );
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

  const order = new BeginOrder();

  /** The single INSERT of a new record; AGAIN when the key exists (or a deadlock). */
  async function insertOne(input: BeginInput): Promise<BeginOutcome> {
    let header: MysqlResultHeader;
    try {
      header = (
        await send(sql.insert, [
          input.key,
          input.fingerprint,
          input.leaseMs,
          input.ttlMs,
          input.leaseMs,
        ])
      )[0] as MysqlResultHeader;
    } catch (error) {
      // Another caller inserted it first: read what it wrote.
      if (isDuplicateKey(error) || isTransientConflict(error)) return AGAIN;
      throw storeError('begin', error);
    }
    return fresh(input.key, header, input.leaseMs);
  }

  /** One round of begin, alone; AGAIN when the record changed under it. */
  async function beginOne(input: BeginInput): Promise<BeginOutcome> {
    const insertFirst = order.insertFirst();
    if (insertFirst) {
      const inserted = await insertOne(input);
      order.saw(inserted !== AGAIN);
      if (inserted !== AGAIN) return inserted;
      // The key exists: fall through to the read, as a read-first round would have begun.
    }
    const [row] = await rows('begin', sql.read, [input.fingerprint, input.key]);
    if (!insertFirst) order.saw(row === undefined);
    if (row === undefined) return insertOne(input);
    if (Number((row as { live?: unknown }).live) === 1) {
      return { kind: 'existing', record: recordFromRow(row) };
    }
    return takeOver(input);
  }

  /** The conditional takeover of a record that exists but may be acquired. */
  async function takeOver(input: BeginInput): Promise<BeginOutcome> {
    const { key, fingerprint, leaseMs, ttlMs } = input;
    const header = await write('begin', sql.takeOver, [
      fingerprint,
      leaseMs,
      ttlMs,
      leaseMs,
      leaseMs,
      key,
      fingerprint,
    ]);
    if (matchedRows(header) === 0) return AGAIN;
    const token = integerColumn(key, 'token', header.insertId);
    // The row is ours under `token`: nothing but this holder can change it now.
    const [held] = await rows('begin', sql.readHeld, [key, token]);
    if (held === undefined) return AGAIN; // lost already (a tiny lease): start over
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

  const settle = (error: unknown) => storeError('begin', error);

  const batchSql = new Map<number, MysqlBatchStatements>();
  const batchStatements = (n: number) => {
    let statements = batchSql.get(n);
    if (statements === undefined) {
      statements = mysqlBatchStatements(table, n);
      batchSql.set(n, statements);
    }
    return statements;
  };

  /**
   * A batch statement, sent as text (client-side escaping): each batch size is its own
   * statement text, and a prepared statement per size and connection would cost more than
   * parsing one statement for many calls.
   */
  async function batchQuery(operation: string, text: string, values: MysqlValue[]) {
    for (let run = 1; ; run++) {
      try {
        const [result] = await db.query(text, values);
        return result;
      } catch (error) {
        if (run < MAX_CONFLICT_RUNS && isTransientConflict(error)) continue;
        throw storeError(operation, error);
      }
    }
  }

  /**
   * One multi-row INSERT of new records (inputs sorted by key). On a duplicate key it acquired
   * none: AGAIN for all, or with `oneByOne`, each key's own INSERT, so every key that is still
   * missing is acquired now (a contended batch cannot go round again and again).
   */
  async function insertMany(inputs: BeginInput[], oneByOne: boolean): Promise<BeginOutcome[]> {
    if (inputs.length === 1) return [await insertOne(inputs[0] as BeginInput)];
    const values: MysqlValue[] = [];
    for (const i of inputs) values.push(i.key, i.fingerprint, i.leaseMs, i.ttlMs, i.leaseMs);
    let header: MysqlResultHeader;
    try {
      header = (
        await db.query(batchStatements(inputs.length).insertMany, values)
      )[0] as MysqlResultHeader;
    } catch (error) {
      if (!(isDuplicateKey(error) || isTransientConflict(error))) throw storeError('begin', error);
      if (!oneByOne) return inputs.map(() => AGAIN);
      return Promise.all(inputs.map((input) => insertOne(input).catch(settle)));
    }
    return inputs.map((i) => fresh(i.key, header, i.leaseMs));
  }

  /** One round of begin for many distinct keys (see mysqlBatchStatements). */
  async function beginMany(given: BeginInput[]): Promise<BeginOutcome[]> {
    const inputs = sortedByKey(given);
    const outcomes = new Map<BeginInput, BeginOutcome>();
    if (order.insertFirst()) {
      const all = await insertMany(inputs, false);
      // All or none: the INSERT is one atomic statement. When it failed, the read counts.
      if (!(all[0] === AGAIN || all[0] instanceof Error)) {
        for (const [n, input] of inputs.entries()) {
          order.saw(true);
          outcomes.set(input, all[n] as BeginOutcome);
        }
        return given.map((input) => outcomes.get(input) ?? AGAIN);
      }
      // Some key exists: fall through to the read, as a read-first round would have begun.
    }
    const found = await batchQuery(
      'begin',
      batchStatements(inputs.length).readMany,
      inputs.map((i) => i.key),
    );
    if (!Array.isArray(found)) {
      throw new StoreUnavailableError('mysql store: begin got no rows from the server');
    }
    const byKey = new Map<string, unknown>();
    for (const row of found) byKey.set(textColumn('key', (row as { key?: unknown }).key), row);
    const absent: BeginInput[] = [];
    const takeovers: BeginInput[] = [];
    for (const input of inputs) {
      const row = byKey.get(input.key);
      order.saw(row === undefined);
      if (row === undefined) {
        absent.push(input);
        continue;
      }
      try {
        // Decided on the columns the decision needs, as the single read decides in SQL: a
        // record that is not live goes to its takeover without being read whole, so an expired
        // record with unreadable steps or result starts afresh here as it does alone.
        if (isLiveRow(row, input.key, input.fingerprint)) {
          outcomes.set(input, { kind: 'existing', record: recordFromRow(row) });
        } else {
          takeovers.push(input);
        }
      } catch (error) {
        // One unreadable record fails its own call only.
        outcomes.set(input, storeError('begin', error));
      }
    }
    // Each part fails alone: the records already read are answered whatever happens here.
    const [insertedOutcomes, takenOutcomes] = await Promise.all([
      absent.length === 0
        ? []
        : insertMany(absent, true).catch((error: unknown) => absent.map(() => settle(error))),
      Promise.all(takeovers.map((input) => takeOver(input).catch(settle))),
    ]);
    for (const [n, input] of absent.entries()) {
      outcomes.set(input, insertedOutcomes[n] as BeginOutcome);
    }
    for (const [n, input] of takeovers.entries()) {
      outcomes.set(input, takenOutcomes[n] as BeginOutcome);
    }
    return given.map((input) => outcomes.get(input) ?? AGAIN);
  }

  async function finishOne(input: FinishInput): Promise<FinishOutcome> {
    return input.done
      ? fencedWrite('complete', sql.complete, [input.value, input.ttlMs, input.key, input.token])
      : fencedWrite('fail', sql.fail, [input.value, input.ttlMs, input.key, input.token]);
  }

  /** complete/fail of many distinct keys in one UPDATE (see mysqlBatchStatements). */
  async function finishMany(given: FinishInput[]): Promise<FinishOutcome[]> {
    const inputs = sortedByKey(given);
    const statements = batchStatements(inputs.length);
    const values: MysqlValue[] = [];
    for (const i of inputs) values.push(i.key, i.token, i.done ? 1 : 0, i.value, i.ttlMs);
    const operation = given.every((i) => i.done) ? 'complete' : 'complete/fail';
    const header = (await batchQuery(
      operation,
      statements.finishMany,
      values,
    )) as MysqlResultHeader;
    const matched = matchedRows(header);
    if (matched === inputs.length) return given.map(() => OK);
    if (matched === 0) return given.map(() => LOST);
    // Some matched: read back which keys now hold this statement's write.
    const at = integerColumn('', 'updated_at', header.insertId);
    const found = await batchQuery(
      operation,
      statements.checkMany,
      inputs.map((i) => i.key),
    );
    const byKey = new Map(inputs.map((i) => [i.key, i]));
    const written = new Set<string>();
    for (const row of Array.isArray(found) ? found : []) {
      if (holdsWrite(row as Record<string, unknown>, byKey, at)) {
        written.add(textColumn('key', (row as Record<string, unknown>).key));
      }
    }
    if (written.size === matched) {
      return given.map((i) => (written.has(i.key) ? OK : LOST));
    }
    /*
     * Not as many keys hold this write as rows matched: a key written here was changed again
     * at once (deleted, or expired and taken over), or a duplicate call of a key's own holder
     * wrote the same value under the same token in the same millisecond. No answer is
     * certain then: every call of the batch fails closed.
     */
    const doubt = new StoreUnavailableError(
      `mysql store: ${operation} of ${inputs.length} keys matched ${matched} rows but ${written.size} hold the write; the outcome is unknown`,
    );
    return given.map(() => doubt);
  }

  const begins = batchedCalls(batching, beginOne, beginMany);
  // A batch's values together stay far below max_allowed_packet (1 MiB on the smallest
  // servers in use): many values just under MAX_BATCHED_VALUE, in three-byte characters,
  // would otherwise make a statement the server cuts the connection over.
  const finishes = batchedCalls(batching, finishOne, finishMany, {
    maxBatchWeight: MAX_BATCH_VALUE_BYTES,
    weightOf: (input) => input.key.length * 3 + input.value.length * 3,
  });

  /**
   * The server's `max_allowed_packet`, read once, when a large value first comes. A statement
   * past it is refused (or its connection cut mid-write), and nothing is written: told as
   * RESULT_TOO_LARGE, which the core records as the operation's failure, rather than as the
   * store being unavailable, which would leave the record for a takeover to run again.
   */
  let maxPacket: Promise<number> | undefined;
  async function checkFits(
    operation: string,
    key: string,
    value: string,
    extra = '',
  ): Promise<void> {
    // max_allowed_packet is 4 MiB by default on MySQL and 16 MiB on MariaDB, and rarely set
    // below 1 MiB: only a value that may come near it costs the check.
    if (value.length < LARGE_VALUE) return;
    maxPacket ??= rows(operation, 'SELECT @@max_allowed_packet AS m', []).then(
      (result) => Number((result[0] as { m?: unknown } | undefined)?.m),
      (error: unknown) => {
        maxPacket = undefined;
        throw error;
      },
    );
    const limit = await maxPacket;
    const bytes =
      Buffer.byteLength(value) +
      Buffer.byteLength(key) +
      Buffer.byteLength(extra) +
      STATEMENT_BYTES;
    if (Number.isFinite(limit) && bytes > limit) {
      throw new ResultNotStorableError(
        `mysql store: ${operation} of a ${Buffer.byteLength(value)}-byte value would pass the server's max_allowed_packet (${limit} bytes); nothing was written`,
        undefined,
        ErrorCode.RESULT_TOO_LARGE,
      );
    }
  }

  /** complete or fail, batched when batching is on and the value is small. */
  async function finish(input: FinishInput): Promise<FencedResult> {
    await checkFits(input.done ? 'complete' : 'fail', input.key, input.value);
    const outcome =
      input.value.length <= MAX_BATCHED_VALUE ? await finishes.run(input) : await finishOne(input);
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  const store: MysqlStore = {
    name: 'mysql',
    table,

    async begin(key, fingerprint, leaseMs, ttlMs) {
      checkKey(key);
      checkFingerprint(fingerprint);
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
        `mysql store: begin(${showValue(key)}) found the record changing under it ${MAX_BEGIN_ROUNDS} times in a row`,
      );
    },

    async complete(key, token, result, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('result', result);
      return finish({ key, token, done: true, value: result, ttlMs: durationArg('ttlMs', ttlMs) });
    },

    async fail(key, token, error, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('error', error);
      return finish({ key, token, done: false, value: error, ttlMs: durationArg('ttlMs', ttlMs) });
    },

    async release(key, token, ttlMs) {
      checkKey(key);
      checkToken(token);
      const keep = ttlMs === undefined ? 0 : durationArg('ttlMs', ttlMs);
      return fencedWrite('release', sql.release, [keep, keep, key, token]);
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
      await checkFits('saveStep', key, result, name);
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
      const status = listStatus(STORE, listOptions.status);
      const limit = listLimit(STORE, listOptions.limit);
      const conditions: string[] = [];
      const values: MysqlValue[] = [];
      if (status !== undefined) {
        conditions.push('status = ?');
        values.push(status);
      }
      if (listOptions.cursor !== undefined) {
        // Binary comparison: VARBINARY keys sort by UTF-8 bytes, i.e. by code point.
        conditions.push('`key` > ?');
        values.push(decodeKeyCursor(STORE, listOptions.cursor));
      }
      const where = conditions.length === 0 ? '' : ` WHERE ${conditions.join(' AND ')}`;
      const found = await rows('list', `${sql.listPrefix}${where} ORDER BY \`key\` LIMIT ?`, [
        ...values,
        limit + 1,
      ]);
      const records: IdempotencyRecord[] = found.slice(0, limit).map(recordFromRow);
      const last = records[records.length - 1];
      return found.length > limit && last !== undefined
        ? { records, cursor: encodeKeyCursor(last.key) }
        : { records };
    },

    async purgeExpired(purgeOptions: { limit?: number } = {}) {
      const limit = purgeOptions.limit;
      if (limit === undefined) {
        return (await write('purgeExpired', sql.purgeAll, [])).affectedRows ?? 0;
      }
      if (!Number.isInteger(limit) || limit < 0) {
        throw new InvalidArgumentError(
          `mysql store: purgeExpired limit must be an integer >= 0, got ${showValue(limit)}`,
        );
      }
      if (limit === 0) return 0;
      return (await write('purgeExpired', sql.purgeSome, [limit])).affectedRows ?? 0;
    },

    createSchema: () => createMysqlSchema(db, names),

    async close() {
      // The pool is the caller's; only wait for batches still running.
      await Promise.all([begins.settled(), finishes.settled()]);
    },
  };
  return store;
}

/** The name list errors give. */
const STORE = 'mysql store';

/** An acquisition by an INSERT: its token came back through LAST_INSERT_ID. */
function fresh(key: string, header: MysqlResultHeader, leaseMs: number): BeginResult {
  const token = integerColumn(key, 'token', header.insertId);
  if (token <= 0) throw new StoreUnavailableError('mysql store: begin got no token back');
  return {
    kind: 'acquired',
    token,
    // token = the statement's clock in microseconds; lease_until = its ms + lease.
    leaseUntil: Math.floor(token / 1000) + leaseMs,
    attempts: 1,
    steps: {},
    takeover: false,
  };
}

/**
 * The `live` condition of the single read, on a row of the batched read and the server's
 * clock reading it carries (`now_ms`): the record must not be acquired (unexpired, and not an
 * ended lease of the same fingerprint). Only the columns of the condition are read.
 */
function isLiveRow(row: unknown, key: string, fingerprint: string): boolean {
  const r = row as Record<string, unknown>;
  const now = integerColumn(key, 'now_ms', r.now_ms);
  if (integerColumn(key, 'expires_at', r.expires_at) <= now) return false;
  return !(
    textColumn('status', r.status) === 'in_progress' &&
    integerColumn(key, 'lease_until', r.lease_until) <= now &&
    textColumn('fingerprint', r.fingerprint) === fingerprint
  );
}

/** Inputs in the byte order of their keys (VARBINARY order): batches lock rows in one order. */
function sortedByKey<T extends { key: string }>(inputs: T[]): T[] {
  return inputs
    .map((input) => ({ input, bytes: Buffer.from(input.key, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((x) => x.input);
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

/**
 * Whether a row read back after a batched complete/fail holds this statement's write for its
 * key. A row that cannot be read (another key's corrupt token, say) does not: it never stops
 * the others from being told their answer (the count of matched rows still decides).
 */
function holdsWrite(
  r: Record<string, unknown>,
  byKey: Map<string, { token: number; done: boolean; value: string }>,
  at: number,
): boolean {
  try {
    const key = textColumn('key', r.key);
    const input = byKey.get(key);
    return (
      input !== undefined &&
      integerColumn(key, 'token', r.token) === input.token &&
      integerColumn(key, 'updated_at', r.updated_at) === at &&
      textColumn('status', r.status) === (input.done ? 'completed' : 'failed') &&
      (input.done ? r.result : r.error) !== null &&
      textColumn('value', input.done ? r.result : r.error) === input.value
    );
  } catch {
    return false;
  }
}
