import {
  DeleteItemCommand,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { type Clock, systemClock } from '../../clock.js';
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
import { BeginOrder } from '../begin-order.js';
import { checkKey, checkString, checkToken, duration } from './arguments.js';
import { type CreateTableResult, checkTableName, createDynamoDbTable } from './create-table.js';
import { isConditionFailed, isDocumentPathInvalid, toStoreError } from './dynamodb-errors.js';
import type { DynamoDbClientLike } from './dynamodb-like.js';
import { type ExpressionParts, expression } from './expression.js';
import {
  DELETED,
  type Item,
  MAX_ITEM_BYTES,
  STEP_PREFIX,
  type Stored,
  baseItemBytes,
  fromItem,
  n,
  newClaim,
  newItem,
  ttlSeconds,
  utf8Bytes,
} from './item.js';
import {
  MAX_LIST_LIMIT,
  decodeKeyCursor,
  encodeKeyCursor,
  listLimit,
  listStatus,
} from '../list-options.js';
import { acquiredRecord } from '../acquired-record.js';

/** Options of {@link createDynamoDbStore}. */
export interface DynamoDbStoreOptions {
  /** The table (create it with `store.createTable()` or {@link createDynamoDbTable}). */
  table: string;
  /**
   * The clock leases, expiry and tokens are computed from (default: the system clock).
   * DynamoDB has no server clock usable in a condition, so these times are the writer's: keep
   * the clocks of every process that shares the table in sync (NTP). See {@link createDynamoDbStore}.
   */
  clock?: Clock;
  /** How long a deleted record's tombstone keeps its token (default 1 hour). */
  tombstoneMs?: number;
}

/** The DynamoDB store: an {@link IdempotencyStore} plus its table. */
export interface DynamoDbStore extends IdempotencyStore {
  readonly name: 'dynamodb';
  readonly table: string;
  /** Creates the table if it is missing and turns on native TTL (see {@link createDynamoDbTable}). */
  createTable(): Promise<CreateTableResult>;
}

/** Rounds of read-and-retry in begin before giving up (each round sees a newer record). */
const MAX_BEGIN_ROUNDS = 8;
/** The name list errors give. */
const STORE = 'dynamodb store';

/** Projection of the attributes `purgeExpired` needs. */
const PURGE_PROJECTION = '#pk, #token, #status, #ttl';

/**
 * An idempotency store on one DynamoDB table. `begin` claims a key with one conditional
 * `PutItem` that writes the new record where there is no item, and otherwise fails and hands
 * back the item that stands in the way (`ReturnValuesOnConditionCheckFailure: ALL_OLD`). That
 * write costs write capacity on DynamoDB even when it fails, so `begin` sends it first only
 * while most recent keys were new (see {@link BeginOrder}):
 *
 * - read-first (the start, and while most recent keys had a record): a replay, an operation in
 *   progress elsewhere or a reused key is one strongly consistent `GetItem`; a new key is that
 *   read and then the claim (which still copes with a creator racing in between);
 * - insert-first (while most recent keys were new): a new key is one request, the claim; a
 *   replay or a lost race is also that one request on DynamoDB, and two where the endpoint
 *   does not return the item with the failure (dynalite: the claim, then a consistent read).
 *
 * A dead record (expired, deleted) or a takeover of an ended lease takes one more conditional
 * write, compare-and-swap on the token just read (by either request); when such a write fails,
 * the item comes back with the failure (`ReturnValuesOnConditionCheckFailure: ALL_OLD`) or,
 * where the endpoint does not return it (dynalite), from a strongly consistent `GetItem`. Both
 * orders decide with the same code and send the same conditional writes; only the cost differs.
 * Every other transition is one conditional write.
 *
 * Clock skew. DynamoDB conditions cannot read a server clock, so leases, expiry and token floors
 * are the writer's `clock.now()`, written into the item and compared in conditions. A writer whose
 * clock runs ahead by `d` ms sees leases end `d` ms early (a takeover before the holder's lease
 * really ended, which fencing then makes safe: the old holder's writes are refused) and records
 * expire `d` ms early; one behind sees them `d` ms late. Keep skew well under the lease (NTP gives
 * milliseconds). Tokens are `max(previous + 1, now_ms * 1000)`: after a record is removed, a
 * writer more than its TTL behind could reissue a token, which no worker can still hold.
 *
 * Items carry `ttl` (epoch seconds) for DynamoDB's native TTL, which removes dead records within
 * days; a record is dead from `expiresAt` on regardless. `purgeExpired()` removes them at once.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
 * import { createDynamoDbStore } from 'reprocess/dynamodb';
 * const store = createDynamoDbStore(new DynamoDBClient({}), { table: 'idempotency' });
 * await store.createTable(); // once, or declare the table in your infrastructure code
 * ```
 */
export function createDynamoDbStore(
  client: DynamoDbClientLike,
  options: DynamoDbStoreOptions,
): DynamoDbStore {
  if (typeof client !== 'object' || client === null || typeof client.send !== 'function') {
    throw new InvalidArgumentError('createDynamoDbStore: client must be a DynamoDBClient');
  }
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('createDynamoDbStore: options { table } are required');
  }
  const table = options.table;
  checkTableName(table);
  const clock = options.clock ?? systemClock;
  const tombstoneMs = duration('tombstoneMs', options.tombstoneMs ?? 3_600_000, 0);
  const now = () => Math.floor(clock.now());

  async function send<T>(operation: string, command: Parameters<DynamoDbClientLike['send']>[0]) {
    try {
      return (await client.send(command)) as T;
    } catch (error) {
      throw toStoreError(error, operation, table);
    }
  }

  /** The item as stored, by a strongly consistent read. */
  async function readItem(operation: string, key: string): Promise<Item | undefined> {
    const out = await send<{ Item?: Item }>(
      operation,
      new GetItemCommand({ TableName: table, Key: { pk: { S: key } }, ConsistentRead: true }),
    );
    return out.Item;
  }

  async function getItem(key: string): Promise<Stored | undefined> {
    const item = await readItem('get', key);
    return item === undefined ? undefined : fromItem(table, item);
  }

  const order = new BeginOrder();

  type Attempt = { ok: true; attributes?: Item } | { ok: false; old: Stored | undefined };

  /**
   * Sends a conditional write for begin. When the condition fails, the item that stands in the
   * way comes back with it (ALL_OLD); where the endpoint does not return it, a strongly
   * consistent read fetches it, and the caller's loop copes with it having changed since.
   */
  async function attempt(
    key: string,
    command: PutItemCommand | UpdateItemCommand,
  ): Promise<Attempt> {
    try {
      const out = (await client.send(command)) as { Attributes?: Item };
      return out.Attributes === undefined ? { ok: true } : { ok: true, attributes: out.Attributes };
    } catch (error) {
      if (!isConditionFailed(error)) throw toStoreError(error, 'begin', table);
      const old = error.Item !== undefined ? fromItem(table, error.Item) : await getItem(key);
      return { ok: false, old };
    }
  }

  /**
   * A fenced update: applied only under `token` on an in-progress record (and
   * `extraCondition`, when given). A failed condition is `lease_lost`: nothing was written.
   * Expiry is not part of the fence: a holder whose record outlived its TTL (nobody took it
   * over, or the token would differ) may still record its outcome rather than lose it.
   */
  async function fenced(
    operation: string,
    key: string,
    token: number,
    at: number,
    parts: Omit<ExpressionParts, 'condition'> & {
      extraCondition?: string;
      /**
       * Whether a record already shows this write's effect under `token`. The SDK resends a
       * request whose answer was lost (a reset, a 5xx after the write); the resend then fails
       * its condition against the item the first one wrote. Such a failure is this write's
       * success, not a lost lease, when the item also bears this write's id.
       */
      applied: (record: IdempotencyRecord) => boolean;
    },
  ): Promise<'ok' | 'lease_lost'> {
    const { extraCondition, applied, ...rest } = parts;
    const fence = '#token = :token AND #status = :inProgress';
    // This write's own id: a resend of it meets the id it wrote, a second call with the same
    // arguments (a caller completing twice) does not, and is lease_lost as the contract says.
    const write = newClaim();
    const input = expression({
      ...rest,
      update: rest.update === undefined ? 'SET #write = :write' : `${rest.update}, #write = :write`,
      condition: extraCondition === undefined ? fence : `${fence} AND ${extraCondition}`,
      values: {
        ...rest.values,
        ':write': { S: write },
        ':token': n(token),
        ':inProgress': { S: 'in_progress' },
        ':now': n(at),
      },
    });
    try {
      await client.send(
        new UpdateItemCommand({
          TableName: table,
          Key: { pk: { S: key } },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          ...input,
        }),
      );
      return 'ok';
    } catch (error) {
      if (!isConditionFailed(error)) {
        // An item damaged by hand: the read throws RecordCorruptError naming what is wrong.
        if (isDocumentPathInvalid(error)) await getItem(key);
        throw toStoreError(error, operation, table);
      }
      let stored: Stored | undefined;
      try {
        stored = error.Item !== undefined ? fromItem(table, error.Item) : await getItem(key);
      } catch {
        return 'lease_lost'; // unreadable or unreachable: what the condition said stands
      }
      if (stored === undefined || stored.deleted || stored.record.token !== token) {
        return 'lease_lost';
      }
      return stored.write === write && applied(stored.record) ? 'ok' : 'lease_lost';
    }
  }

  /**
   * The record a `begin` call wrote itself, met again when the SDK resent its claim (the first
   * answer lost after the server applied it): in progress under this call's claim id, which
   * no other call has. Anything done to the record since (a takeover, a delete) replaced the id.
   */
  function ownClaim(stored: Stored | undefined, claim: string): IdempotencyRecord | undefined {
    if (stored === undefined || stored.deleted || stored.claim !== claim) return undefined;
    return stored.record.status === 'in_progress' ? stored.record : undefined;
  }

  function checkSize(operation: string, key: string, extraBytes: number): void {
    const bytes = baseItemBytes(key, '') + extraBytes;
    if (bytes > MAX_ITEM_BYTES) {
      throw new ResultNotStorableError(
        `dynamodb store: ${operation}: the record would be at least ${bytes} bytes, over DynamoDB's item limit of ${MAX_ITEM_BYTES} bytes (400 KB); store large results elsewhere and keep a reference`,
        undefined,
        ErrorCode.RESULT_TOO_LARGE,
      );
    }
  }

  async function finish(
    operation: 'complete' | 'fail',
    key: string,
    token: number,
    value: string,
    ttlMs: number,
  ): Promise<FencedResult> {
    const field = operation === 'complete' ? 'result' : 'error';
    checkSize(operation, key, field.length + utf8Bytes(value));
    const at = now();
    const expiresAt = at + ttlMs;
    const final = operation === 'complete' ? 'completed' : 'failed';
    const outcome = await fenced(operation, key, token, at, {
      applied: (r) => r.status === final && r[field] === value,
      update: `SET #status = :final, #${field} = :value, #leaseUntil = :zero, #expiresAt = :expiresAt, #ttl = :ttl, #updatedAt = :now`,
      values: {
        ':zero': n(0),
        ':final': { S: final },
        ':value': { S: value },
        ':expiresAt': n(expiresAt),
        ':ttl': n(ttlSeconds(expiresAt)),
      },
    });
    return outcome === 'lease_lost' ? { kind: 'lease_lost' } : { kind: 'ok' };
  }

  async function scanPage(
    operation: string,
    parts: ExpressionParts,
    limit: number,
    startKey: string | undefined,
  ): Promise<{ items: Item[]; lastKey?: string }> {
    const out = await send<{ Items?: Item[]; LastEvaluatedKey?: Item }>(
      operation,
      new ScanCommand({
        TableName: table,
        ConsistentRead: true,
        Limit: limit,
        ...expression(parts),
        ...(startKey === undefined ? {} : { ExclusiveStartKey: { pk: { S: startKey } } }),
      }),
    );
    const lastKey = out.LastEvaluatedKey?.pk?.S;
    return lastKey === undefined ? { items: out.Items ?? [] } : { items: out.Items ?? [], lastKey };
  }

  return {
    name: 'dynamodb',
    // Leases are decided on this writer's clock (see IdempotencyStore.leaseClock).
    leaseClock: clock,
    table,
    createTable: () => createDynamoDbTable(client, table),

    async begin(key, fingerprint, leaseMs, ttlMs): Promise<BeginResult> {
      checkKey(key);
      checkString('fingerprint', fingerprint);
      const lease = duration('leaseMs', leaseMs, 0);
      const ttl = duration('ttlMs', ttlMs, 1);
      checkSize('begin', key, utf8Bytes(fingerprint));
      // Written with whichever claim succeeds: should the SDK resend a claim whose answer was
      // lost after the server applied it, the resend fails its condition on the item the first
      // send wrote, and this id tells that item apart from anybody else's claim.
      const claim = newClaim();
      // What is known of the stored item: not read yet ('unknown'), absent, or as last seen.
      let known: Stored | undefined | 'unknown' = 'unknown';
      const readFirst = !order.insertFirst();
      if (readFirst) {
        // Read-first: the read stands in for the claim's ALL_OLD, and the loop decides from it
        // exactly as from that: a live record is returned as it is, a dead record or an ended
        // lease goes to its compare-and-swap, no item goes to the claim. A malformed item is
        // RecordCorruptError at once, as the failed claim reports it insert-first (no write of
        // this store changes such an item, so reading it again would find it the same).
        const item = await readItem('begin', key);
        order.saw(item === undefined);
        known = item === undefined ? undefined : fromItem(table, item);
      }
      for (let round = 0; round < MAX_BEGIN_ROUNDS; round++) {
        const at = now();
        const floor = at * 1000;
        const leaseUntil = at + lease;
        const expiresAt = at + Math.max(ttl, lease);

        if (known === 'unknown' || known === undefined) {
          // The claim: the new record where there is no item. Any item fails the condition and
          // comes back with the failure (or from a consistent read), and the loop decides on it
          // as on the read-first read: a live record is the answer, a dead one or an ended
          // lease goes to its compare-and-swap, a malformed one is RecordCorruptError. A PutItem
          // rather than an UpdateItem that sets each attribute if_not_exists: on dynalite the
          // update expression cost two and a half times the server CPU of the whole claim.
          const tried = await attempt(
            key,
            new PutItemCommand({
              TableName: table,
              Item: newItem(key, fingerprint, floor, at, leaseUntil, expiresAt, claim),
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
              ...expression({ condition: 'attribute_not_exists(#pk)' }),
            }),
          );
          // Insert-first, this first claim is what tells whether the key had an item.
          if (!readFirst && round === 0) order.saw(tried.ok);
          if (tried.ok) {
            return {
              kind: 'acquired',
              token: floor,
              leaseUntil,
              attempts: 1,
              steps: {},
              takeover: false,
            };
          }
          const own = ownClaim(tried.old, claim);
          if (own) return acquiredRecord(own, false);
          known = tried.old;
          continue;
        }

        const previous = known.deleted ? known.token : known.record.token;
        const token = Math.max(previous + 1, floor);

        if (known.deleted || known.record.expiresAt <= at) {
          // Dead (expired or a tombstone) with a token at or above our floor (a clock behind the
          // last writer's, or within the same millisecond): a new operation, compare-and-swap on
          // the token we saw so the sequence carries on.
          const tried = await attempt(
            key,
            new PutItemCommand({
              TableName: table,
              Item: newItem(key, fingerprint, token, at, leaseUntil, expiresAt, claim),
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
              ...expression({
                condition: '#token = :previous AND #expiresAt <= :now',
                values: { ':previous': n(previous), ':now': n(at) },
              }),
            }),
          );
          if (tried.ok) {
            return { kind: 'acquired', token, leaseUntil, attempts: 1, steps: {}, takeover: false };
          }
          const own = ownClaim(tried.old, claim);
          if (own) return acquiredRecord(own, false);
          known = tried.old;
          continue;
        }

        const record = known.record;
        if (
          record.status === 'in_progress' &&
          record.leaseUntil <= at &&
          record.fingerprint === fingerprint
        ) {
          // The lease ended: the same operation resumes with its steps. The condition repeats
          // everything this decision read, so a heartbeat, completion or other takeover in
          // between makes it fail and the loop looks again.
          const attempts = record.attempts + 1;
          // Its expiry carries on, moved only as far as the new lease needs.
          const newExpiresAt = Math.max(record.expiresAt, leaseUntil);
          const tried = await attempt(
            key,
            new UpdateItemCommand({
              TableName: table,
              Key: { pk: { S: key } },
              ReturnValues: 'ALL_NEW',
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
              ...expression({
                update:
                  'SET #token = :token, #attempts = :attempts, #leaseUntil = :leaseUntil, #expiresAt = :expiresAt, #ttl = :ttl, #updatedAt = :now, #claim = :claim',
                condition:
                  '#token = :previous AND #status = :inProgress AND #leaseUntil <= :now AND #expiresAt > :now AND #fingerprint = :fingerprint',
                values: {
                  ':token': n(token),
                  ':attempts': n(attempts),
                  ':leaseUntil': n(leaseUntil),
                  ':expiresAt': n(newExpiresAt),
                  ':ttl': n(ttlSeconds(newExpiresAt)),
                  ':now': n(at),
                  ':previous': n(previous),
                  ':inProgress': { S: 'in_progress' },
                  ':fingerprint': { S: fingerprint },
                  ':claim': { S: claim },
                },
              }),
            }),
          );
          if (tried.ok) {
            const updated =
              tried.attributes === undefined ? undefined : fromItem(table, tried.attributes);
            const steps = updated && !updated.deleted ? updated.record.steps : record.steps;
            return { kind: 'acquired', token, leaseUntil, attempts, steps, takeover: true };
          }
          const own = ownClaim(tried.old, claim);
          if (own) return acquiredRecord(own, true);
          known = tried.old;
          continue;
        }

        return { kind: 'existing', record };
      }
      throw new StoreUnavailableError(
        `dynamodb store: begin on table ${table} gave up after ${MAX_BEGIN_ROUNDS} rounds: the record kept changing`,
      );
    },

    async complete(key, token, result, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('result', result);
      return finish('complete', key, token, result, duration('ttlMs', ttlMs, 1));
    },

    async fail(key, token, error, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('error', error);
      return finish('fail', key, token, error, duration('ttlMs', ttlMs, 1));
    },

    async release(key, token, ttlMs): Promise<FencedResult> {
      checkKey(key);
      checkToken(token);
      const keepMs = ttlMs === undefined ? undefined : duration('ttlMs', ttlMs, 1);
      const at = now();
      if (keepMs !== undefined) {
        // Kept at least ttl from now: expiresAt becomes max(expiresAt, now + ttl). As for a
        // heartbeat, an update expression has no max: the usual case here (the record was
        // created a while ago with the same ttl) moves the expiry, the other leaves it.
        const keep = at + keepMs;
        const moved = await fenced('release', key, token, at, {
          applied: (r) => r.status === 'in_progress' && r.leaseUntil === 0 && r.expiresAt === keep,
          update: 'SET #leaseUntil = :zero, #expiresAt = :keep, #ttl = :ttl, #updatedAt = :now',
          extraCondition: '#expiresAt < :keep',
          values: { ':zero': n(0), ':keep': n(keep), ':ttl': n(ttlSeconds(keep)) },
        });
        if (moved === 'ok') return { kind: 'ok' };
        const kept = await fenced('release', key, token, at, {
          applied: (r) => r.status === 'in_progress' && r.leaseUntil === 0 && r.expiresAt >= keep,
          update: 'SET #leaseUntil = :zero, #updatedAt = :now',
          extraCondition: '#expiresAt >= :keep',
          values: { ':zero': n(0), ':keep': n(keep) },
        });
        return kept === 'lease_lost' ? { kind: 'lease_lost' } : { kind: 'ok' };
      }
      const outcome = await fenced('release', key, token, at, {
        applied: (r) => r.status === 'in_progress' && r.leaseUntil === 0,
        update: 'SET #leaseUntil = :zero, #updatedAt = :now',
        values: { ':zero': n(0) },
      });
      return outcome === 'lease_lost' ? { kind: 'lease_lost' } : { kind: 'ok' };
    },

    async heartbeat(key, token, leaseMs): Promise<HeartbeatResult> {
      checkKey(key);
      checkToken(token);
      const lease = duration('leaseMs', leaseMs, 0);
      const at = now();
      const leaseUntil = at + lease;
      // The lease must not outlive the record: expiresAt becomes max(expiresAt, leaseUntil).
      // An update expression has no max, so the usual case (the record lives longer) is one
      // write conditioned on it, and the other a second write with the expiry moved.
      const beaten = (r: IdempotencyRecord) =>
        r.status === 'in_progress' && r.leaseUntil === leaseUntil && r.expiresAt >= leaseUntil;
      const common = await fenced('heartbeat', key, token, at, {
        applied: beaten,
        update: 'SET #leaseUntil = :leaseUntil, #updatedAt = :now',
        extraCondition: '#expiresAt >= :leaseUntil',
        values: { ':leaseUntil': n(leaseUntil) },
      });
      if (common !== 'lease_lost') return { kind: 'ok', leaseUntil };
      const stretched = await fenced('heartbeat', key, token, at, {
        applied: beaten,
        update:
          'SET #leaseUntil = :leaseUntil, #expiresAt = :leaseUntil, #ttl = :ttl, #updatedAt = :now',
        extraCondition: '#expiresAt < :leaseUntil',
        values: { ':leaseUntil': n(leaseUntil), ':ttl': n(ttlSeconds(leaseUntil)) },
      });
      // Neither held: the token is no longer current (a takeover between the two is lost too).
      return stretched === 'lease_lost' ? { kind: 'lease_lost' } : { kind: 'ok', leaseUntil };
    },

    async saveStep(key, token, name, result): Promise<FencedResult> {
      checkKey(key);
      checkToken(token);
      checkString('step name', name);
      checkString('step result', result);
      checkSize('saveStep', key, STEP_PREFIX.length + utf8Bytes(name) + utf8Bytes(result));
      const outcome = await fenced('saveStep', key, token, now(), {
        applied: (r) =>
          r.status === 'in_progress' && Object.hasOwn(r.steps, name) && r.steps[name] === result,
        update: 'SET #steps.#step = :result, #updatedAt = :now',
        names: { '#step': `${STEP_PREFIX}${name}` },
        values: { ':result': { S: result } },
      });
      return outcome === 'lease_lost' ? { kind: 'lease_lost' } : { kind: 'ok' };
    },

    async get(key): Promise<IdempotencyRecord | undefined> {
      checkKey(key);
      const stored = await getItem(key);
      return stored === undefined || stored.deleted ? undefined : stored.record;
    },

    async delete(key): Promise<boolean> {
      checkKey(key);
      const at = now();
      // A tombstone, not a DeleteItem: it keeps the token, so the next begin on this key issues
      // a greater one even if the clock has not moved since.
      try {
        await client.send(
          new UpdateItemCommand({
            TableName: table,
            Key: { pk: { S: key } },
            ...expression({
              update:
                'SET #status = :deleted, #expiresAt = :zero, #ttl = :ttl, #updatedAt = :now REMOVE #fingerprint, #attempts, #leaseUntil, #result, #error, #steps, #createdAt',
              condition: 'attribute_exists(#pk) AND #status <> :deleted',
              values: {
                ':deleted': { S: DELETED },
                ':zero': n(0),
                ':ttl': n(ttlSeconds(at + tombstoneMs)),
                ':now': n(at),
              },
            }),
          }),
        );
        return true;
      } catch (error) {
        if (isConditionFailed(error)) return false;
        throw toStoreError(error, 'delete', table);
      }
    },

    /** Pages with a strongly consistent Scan; no order. The cursor is the last key scanned. */
    async list(options: ListOptions = {}): Promise<ListPage> {
      const limit = listLimit(STORE, options.limit);
      const status = listStatus(STORE, options.status);
      let startKey =
        options.cursor === undefined ? undefined : decodeKeyCursor(STORE, options.cursor);
      const parts: ExpressionParts =
        status === undefined
          ? { filter: '#status <> :deleted', values: { ':deleted': { S: DELETED } } }
          : { filter: '#status = :status', values: { ':status': { S: status } } };
      const records: IdempotencyRecord[] = [];
      // Scan's Limit counts items read before the filter, so one page may take several reads.
      while (records.length < limit) {
        const page = await scanPage('list', parts, limit - records.length, startKey);
        for (const item of page.items) {
          const stored = fromItem(table, item);
          if (!stored.deleted) records.push(stored.record);
        }
        if (page.lastKey === undefined) return { records };
        startKey = page.lastKey;
      }
      return { records, cursor: encodeKeyCursor(startKey as string) };
    },

    async purgeExpired(options = {}) {
      const limit = options.limit ?? Number.POSITIVE_INFINITY;
      if (options.limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
        throw new InvalidArgumentError(
          `dynamodb store: purgeExpired limit must be a non-negative integer, got ${options.limit}`,
        );
      }
      const at = now();
      let removed = 0;
      let startKey: string | undefined;
      do {
        const page = await scanPage(
          'purgeExpired',
          {
            filter: '#expiresAt <= :now',
            projection: PURGE_PROJECTION,
            values: { ':now': n(at) },
          },
          MAX_LIST_LIMIT,
          startKey,
        );
        for (const item of page.items) {
          if (removed >= limit) return removed;
          const key = item.pk?.S;
          const token = item.token?.N;
          if (key === undefined || token === undefined) continue;
          const tombstone = item.status?.S === DELETED;
          // Tombstones are not records: removed (uncounted) once they have kept their token long
          // enough for every clock to have moved past it.
          if (tombstone && Number(item.ttl?.N ?? 0) * 1000 > at) continue;
          if ((await removeDead(key, token, at, tombstone)) && !tombstone) removed++;
        }
        startKey = page.lastKey;
      } while (startKey !== undefined);
      return removed;
    },
  };

  /** Deletes an item only if it is still the dead one the scan saw (not re-acquired since). */
  async function removeDead(key: string, token: string, at: number, tombstone: boolean) {
    try {
      await client.send(
        new DeleteItemCommand({
          TableName: table,
          Key: { pk: { S: key } },
          ...expression({
            condition: '#token = :token AND #expiresAt <= :now',
            values: { ':token': { N: token }, ':now': n(at) },
          }),
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw toStoreError(error, tombstone ? 'purgeExpired (tombstone)' : 'purgeExpired', table);
    }
  }
}
