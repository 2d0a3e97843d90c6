import { InvalidArgumentError } from '../../errors.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  ListPage,
} from '../../idempotency/store.js';
import { BeginOrder, foundNew } from '../begin-order.js';
import { batchedCalls } from '../key-batcher.js';
import { checkKey, checkString, checkToken, durationArg } from './arguments.js';
import {
  escapeFingerprint,
  escapeTag,
  finishedAndAlive,
  parseInteger,
  parseJson,
  recordFromReply,
  recordFromText,
  stepsFromList,
  unescapeTag,
} from './record-text.js';
import type { ClusterNodeLike, RedisLike } from './redis-like.js';
import { ScriptRunner, toStoreError } from './script-runner.js';
import { ServerClock } from './server-clock.js';
import { batchSettings } from '../batch-options.js';
import { decodeKeyCursor, encodeKeyCursor, listLimit, listStatus } from '../list-options.js';

/** Options of {@link createRedisStore}. */
export interface RedisStoreOptions {
  /**
   * Prepended to every key (default `reprocess:`). A record of key `k` lives in `<prefix>{k}`
   * and its steps in `<prefix>{k}:s`; the braces are a Redis Cluster hash tag (both keys in one
   * slot), so the prefix must not contain `{` or `}`. Do not also set ioredis' own
   * `keyPrefix`: SCAN patterns ignore it.
   */
  prefix?: string;
  /**
   * How long a record stays in Redis after it expires before native expiry evicts it
   * (default 60 000 ms). It is dead from `expiresAt` on either way (a new begin starts afresh);
   * the grace lets `get`, `list` and `purgeExpired` see what just expired, and keeps the key's
   * token sequence going. 0 evicts at `expiresAt`.
   */
  expiryGraceMs?: number;
  /**
   * Send concurrent `begin` calls on distinct keys as one script call, and concurrent
   * `complete` calls likewise (default true). It pays when many operations are in flight on
   * one store object: the server runs one script for many records and the client encodes and
   * decodes one command (see `npm run bench:stores`); a call alone in its tick goes at once,
   * as its own script call. Each record is decided exactly as alone; a corrupt record fails
   * only its own call. The keys of one batch are in many hash slots, so:
   * - on an ioredis `Cluster` (`isCluster`), calls are not batched;
   * - a server that refuses such a call with `CROSSSLOT` (a Cluster node behind a plain
   *   client) ran none of it: the store re-sends each call alone and stops batching;
   * - behind a proxy that shards keys over standalone servers (twemproxy, Envoy), set `false`:
   *   nothing there refuses a batch whose keys belong to other shards.
   * `false`: one script call per call.
   */
  batch?: boolean | RedisBatchOptions;
  /**
   * Answer the replay of a finished record with one plain `GET` instead of a script call
   * (default true; needs a client with `get` and `time`, as ioredis and {@link fromNodeRedis}
   * have). Only while most recent keys had a record (then a new key costs a GET and the
   * script), only for a call that goes alone (a batch of replays is cheaper still), and only
   * for a completed or failed record without steps that stays alive at least
   * `READ_FIRST_MARGIN_MS` past the server's time as last read with `TIME` (at most 1 s ago):
   * anything else, and any doubt, goes to the script, which decides on the server's clock.
   * The only trust placed in a sample is that the server's clock does not jump forward by
   * more than the margin within a second. `false`: every begin is one script call. Off on an
   * ioredis `Cluster` (its `TIME` may come from another node than the record's), and to be
   * turned off behind a sharding proxy for the same reason.
   */
  readFirst?: boolean;
}

/** Tuning of {@link RedisStoreOptions.batch}. */
export interface RedisBatchOptions {
  /**
   * Most calls in one script call (default 32). Smaller than the concurrency on purpose: with
   * two or more batches in flight the client decodes one while the server runs the next
   * (measured at concurrency 64: 32 gave about 1.4 times the throughput of 64).
   */
  maxBatchSize?: number;
  /** Most batch script calls in flight at once, per kind (default 4). */
  maxInFlight?: number;
}

/** The Redis store: an {@link IdempotencyStore} plus where its records live. */
export interface RedisStore extends IdempotencyStore {
  readonly name: 'redis';
  readonly prefix: string;
  /** The Redis key (a string) that holds the record of `key`; its steps are in `<that>:s`. */
  recordKey(key: string): string;
}

/**
 * How long past the server's time (as last sampled) a record must stay alive for a plain GET
 * to answer its replay.
 */
export const READ_FIRST_MARGIN_MS = 1000;

/** SCAN batch size; fixed, so a cursor re-scanned for a page resumes the same batch. */
const SCAN_COUNT = 200;
/** The name list errors give. */
const STORE = 'redis store';

/**
 * An idempotency store on Redis 7 or later (or a compatible server with Lua and `TIME` in
 * scripts), standalone or Cluster. Every transition is one Lua script on the two keys of one
 * record (one hash slot); leases and expiry use the server's clock; dead records leave by
 * native expiry. `begin` returns the existing record in the same round trip, so a replay costs
 * one call.
 *
 * The client is the caller's and is not closed by `close()`. For fail-closed behaviour when the
 * server goes away, configure it as {@link openRedisStore} does (`maxRetriesPerRequest: 0`,
 * `autoResendUnfulfilledCommands: false`, a `commandTimeout`): the ioredis defaults keep a
 * command waiting through 20 reconnection attempts and resend one whose reply was lost.
 *
 * @example
 * ```ts
 * import Redis from 'ioredis';
 * import { createRedisStore } from 'reprocess/redis';
 * const store = createRedisStore(new Redis(process.env.REDIS_URL), { prefix: 'billing:' });
 * ```
 */
export function createRedisStore(client: RedisLike, options: RedisStoreOptions = {}): RedisStore {
  if (typeof client !== 'object' || client === null || typeof client.evalsha !== 'function') {
    throw new InvalidArgumentError(
      'createRedisStore: client must be an ioredis client (or fromNodeRedis(client))',
    );
  }
  const prefix = options.prefix ?? 'reprocess:';
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new InvalidArgumentError(
      `createRedisStore: prefix must be a string without '{' or '}', got ${JSON.stringify(prefix)}`,
    );
  }
  const grace = durationArg('expiryGraceMs', options.expiryGraceMs ?? 60_000, 0);
  const scripts = new ScriptRunner(client);
  const recordKey = (key: string) => `${prefix}{${escapeTag(key)}}`;
  const keysOf = (key: string): [string, string] => {
    const record = recordKey(key);
    return [record, `${record}:s`];
  };
  const keyOf = (redisKey: string) => unescapeTag(redisKey.slice(prefix.length + 1, -1));
  // Record keys end with the tag's brace; step hashes (`…}:s`) do not match.
  const pattern = `${escapeGlob(prefix)}{*}`;

  async function readRecord(key: string): Promise<IdempotencyRecord | undefined> {
    const reply = await scripts.run('get', keysOf(key), []);
    if (reply === null || reply === undefined) return undefined;
    if (typeof reply !== 'string') throw unexpected('get', reply);
    return recordFromReply(key, reply);
  }

  /** One SCAN call under the prefix, on one node. */
  async function scan(node: Pick<RedisLike, 'scan'>, cursor: string): Promise<[string, string[]]> {
    try {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
      return [String(next), keys];
    } catch (error) {
      throw toStoreError(error, 'scan');
    }
  }

  /**
   * What `list` and `purgeExpired` scan: the client itself, or on an ioredis Cluster each
   * master (SCAN covers one node), in order of address so that a cursor names the same node
   * on the next page. A Cluster client learns its masters once connected: a first SCAN through
   * it waits for that.
   */
  async function scanTargets(): Promise<Array<Pick<RedisLike, 'scan'>>> {
    if (!isCluster(client) || typeof client.nodes !== 'function') return [client];
    const nodes = client.nodes.bind(client);
    let masters = nodes('master');
    if (masters.length === 0) {
      await scan(client, '0');
      masters = nodes('master');
    }
    if (masters.length === 0) {
      throw toStoreError(new Error('the Cluster client knows no master node'), 'scan');
    }
    const address = (node: ClusterNodeLike) => `${node.options?.host}:${node.options?.port}`;
    return masters.slice().sort((a, b) => (address(a) < address(b) ? -1 : 1));
  }

  async function fenced(
    name: 'complete' | 'fail' | 'release' | 'saveStep',
    key: string,
    args: string[],
  ): Promise<FencedResult> {
    const reply = await scripts.run(name, keysOf(key), args);
    if (reply === 'ok') return { kind: 'ok' };
    if (reply === 'lease_lost') return { kind: 'lease_lost' };
    throw toStoreError(new Error(`unexpected reply ${JSON.stringify(reply)}`), name);
  }

  // Read-first (see RedisStoreOptions.readFirst): which order begin takes, and the server's
  // clock as last read, for judging a record read with GET.
  if (options.readFirst !== undefined && typeof options.readFirst !== 'boolean') {
    throw new InvalidArgumentError(
      `createRedisStore: readFirst must be a boolean, got ${typeof options.readFirst}`,
    );
  }
  const get = client.get;
  const time = client.time;
  // Not on a Cluster: its TIME goes to any node and the GET to the key's, and the two clocks
  // may differ by more than the margin (the same holds behind a sharding proxy: set false).
  const readFirst =
    options.readFirst !== false &&
    !isCluster(client) &&
    typeof get === 'function' &&
    typeof time === 'function'
      ? { order: new BeginOrder(), clock: new ServerClock(() => time.call(client)) }
      : undefined;

  /**
   * Begin's answer from a plain GET when it finds a finished record alive (see readFirst);
   * else whether it read (then the order has learned what it found) or not (insert-first, no
   * fresh sample of the server's clock, or read-first off): the script decides either way.
   */
  async function replayByGet(key: string): Promise<BeginResult | 'read' | 'not read'> {
    if (readFirst === undefined || get === undefined || readFirst.order.insertFirst()) {
      return 'not read';
    }
    const serverNow = readFirst.clock.atMost();
    if (serverNow === undefined) return 'not read';
    let text: string | null;
    try {
      text = await get.call(client, recordKey(key));
    } catch (error) {
      throw toStoreError(error, 'begin');
    }
    readFirst.order.saw(text === null);
    if (text === null) return 'read';
    const record = finishedAndAlive(key, text, serverNow + READ_FIRST_MARGIN_MS);
    return record === undefined ? 'read' : { kind: 'existing', record };
  }

  /** Tells the begin order what a script's begin found. */
  function sawReply(result: BeginResult | Error): void {
    if (readFirst === undefined || result instanceof Error) return;
    readFirst.order.saw(foundNew(result));
  }

  async function beginOne(input: BeginInput): Promise<BeginResult> {
    const byGet = await replayByGet(input.key);
    if (typeof byGet === 'object') return byGet;
    const reply = await scripts.run('begin', keysOf(input.key), [
      input.fingerprint,
      input.lease,
      input.ttl,
      grace,
    ]);
    const result = beginReply(input.key, reply);
    if (byGet === 'not read') sawReply(result);
    return result;
  }

  /**
   * One call of a multi-key script: KEYS are each record and its steps, ARGV the grace, then
   * three arguments per record. Returns one reply per input.
   */
  async function runMany<I extends { key: string }>(
    operation: 'begin' | 'complete',
    script: 'beginMany' | 'completeMany',
    inputs: I[],
    argumentsOf: (input: I) => readonly [string, string, string],
  ) {
    const keyCount = inputs.length * 2;
    const keysAndArgs = new Array<string>(inputs.length * 5 + 1);
    keysAndArgs[keyCount] = grace;
    inputs.forEach((input, i) => {
      const record = recordKey(input.key);
      keysAndArgs[2 * i] = record;
      keysAndArgs[2 * i + 1] = `${record}:s`;
      const [a, b, c] = argumentsOf(input);
      keysAndArgs[keyCount + 3 * i + 1] = a;
      keysAndArgs[keyCount + 3 * i + 2] = b;
      keysAndArgs[keyCount + 3 * i + 3] = c;
    });
    return batchReplies(
      operation,
      await scripts.runOn(script, keyCount, keysAndArgs),
      inputs.length,
    );
  }

  /**
   * Set once a server refused a batch with CROSSSLOT (its keys are in several slots and it is a
   * Cluster node): from then on every call goes alone.
   */
  let slotBound = false;

  /**
   * Runs `many` on `inputs`; when the server refuses the batch for spanning slots (it then ran
   * none of it), runs each input alone with `one` instead, now and from then on.
   */
  async function unlessCrossSlot<I, O>(
    inputs: I[],
    one: (input: I) => Promise<O>,
    many: (inputs: I[]) => Promise<Array<O | Error>>,
  ): Promise<Array<O | Error>> {
    if (!slotBound) {
      try {
        return await many(inputs);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.includes('CROSSSLOT')) throw error;
        slotBound = true;
      }
    }
    return Promise.all(inputs.map((input) => one(input).catch((error: Error) => error)));
  }

  async function beginMany(inputs: BeginInput[]): Promise<Array<BeginResult | Error>> {
    const replies = await runMany('begin', 'beginMany', inputs, (input) => [
      input.fingerprint,
      input.lease,
      input.ttl,
    ]);
    return inputs.map((input, i) => {
      const reply = replies[i];
      if (typeof reply === 'string' && reply.startsWith('x')) {
        return toStoreError(new Error(reply.slice(1)), 'begin');
      }
      try {
        const result = beginReply(input.key, reply);
        sawReply(result);
        return result;
      } catch (error) {
        return error as Error;
      }
    });
  }

  async function completeOne(input: CompleteInput): Promise<FencedResult> {
    return fenced('complete', input.key, [input.token, input.result, input.ttl, grace]);
  }

  async function completeMany(inputs: CompleteInput[]): Promise<Array<FencedResult | Error>> {
    const replies = await runMany('complete', 'completeMany', inputs, (input) => [
      input.token,
      input.result,
      input.ttl,
    ]);
    return replies.map((reply) => {
      if (reply === 'ok') return OK;
      if (reply === 'lease_lost') return LOST;
      if (typeof reply === 'string' && reply.startsWith('x')) {
        return toStoreError(new Error(reply.slice(1)), 'complete');
      }
      return unexpected('complete', reply);
    });
  }

  const settings = batchSettings('createRedisStore', options.batch ?? true, {
    maxBatchSize: 32,
    maxInFlight: 4,
  });
  const batching = isCluster(client) ? undefined : settings;
  const begins = batchedCalls<BeginInput, BeginResult | Error>(batching, beginOne, (inputs) =>
    unlessCrossSlot(inputs, beginOne, beginMany),
  );
  const completes = batchedCalls<CompleteInput, FencedResult | Error>(
    batching,
    completeOne,
    (inputs) => unlessCrossSlot(inputs, completeOne, completeMany),
  );

  return {
    name: 'redis',
    prefix,
    recordKey(key) {
      checkKey(key);
      return recordKey(key);
    },

    async begin(key, fingerprint, leaseMs, ttlMs): Promise<BeginResult> {
      checkKey(key);
      checkString('fingerprint', fingerprint);
      const input: BeginInput = {
        key,
        fingerprint: escapeFingerprint(fingerprint),
        lease: durationArg('leaseMs', leaseMs, 0),
        ttl: durationArg('ttlMs', ttlMs, 1),
      };
      return outcomeOf(await begins.run(input));
    },

    async complete(key, token, result, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('result', result);
      const input: CompleteInput = {
        key,
        token: String(token),
        result,
        ttl: durationArg('ttlMs', ttlMs, 1),
      };
      return outcomeOf(await completes.run(input));
    },

    async fail(key, token, error, ttlMs) {
      checkKey(key);
      checkToken(token);
      checkString('error', error);
      return fenced('fail', key, [String(token), error, durationArg('ttlMs', ttlMs, 1), grace]);
    },

    async release(key, token, ttlMs) {
      checkKey(key);
      checkToken(token);
      const keep = ttlMs === undefined ? '0' : durationArg('ttlMs', ttlMs, 1);
      return fenced('release', key, [String(token), keep, grace]);
    },

    async heartbeat(key, token, leaseMs): Promise<HeartbeatResult> {
      checkKey(key);
      checkToken(token);
      const lease = durationArg('leaseMs', leaseMs, 0);
      const reply = await scripts.run('heartbeat', keysOf(key), [String(token), lease, grace]);
      if (reply === 'lease_lost') return { kind: 'lease_lost' };
      if (typeof reply !== 'string' || !reply.startsWith('ok ')) {
        throw unexpected('heartbeat', reply);
      }
      return { kind: 'ok', leaseUntil: parseInteger(key, 'leaseUntil', reply.slice(3)) };
    },

    async saveStep(key, token, name, result) {
      checkKey(key);
      checkToken(token);
      checkString('step name', name);
      checkString('step result', result);
      return fenced('saveStep', key, [String(token), name, result, grace]);
    },

    async get(key) {
      checkKey(key);
      return readRecord(key);
    },

    async delete(key) {
      checkKey(key);
      return (await scripts.run('delete', keysOf(key), [])) === 1;
    },

    /**
     * Pages through records with SCAN: no overall order, and a record written or removed during
     * the listing may be missed or seen twice (SCAN's guarantee). On an ioredis Cluster every
     * master is scanned, one after the other; a resharding during the listing may likewise
     * make it miss or repeat records.
     */
    async list(options: ListOptions = {}): Promise<ListPage> {
      const limit = listLimit(STORE, options.limit);
      const status = listStatus(STORE, options.status);
      let { node, scanCursor, after } = parseCursor(options.cursor);
      const targets = await scanTargets();
      const records: IdempotencyRecord[] = [];
      for (; node < targets.length; node++, scanCursor = '0') {
        const target = targets[node] as Pick<RedisLike, 'scan'>;
        do {
          // A page can end inside a SCAN batch. The cursor then names the batch and the last
          // key returned from it; the batch is read again sorted, and resumes after that key (a
          // skip count would go wrong if the batch changed while the hash table was resizing).
          const [next, keys] = await scan(target, scanCursor);
          const batch = keys.filter((k) => after === undefined || k > after).sort();
          const found = await Promise.all(batch.map((redisKey) => readRecord(keyOf(redisKey))));
          for (let i = 0; i < found.length; i++) {
            const record = found[i];
            if (record === undefined) continue;
            if (status !== undefined && record.status !== status) continue;
            records.push(record);
            if (records.length === limit) {
              if (i < found.length - 1) {
                return { records, cursor: makeCursor(node, scanCursor, batch[i] as string) };
              }
              if (next !== '0') return { records, cursor: makeCursor(node, next) };
              return node + 1 < targets.length
                ? { records, cursor: makeCursor(node + 1, '0') }
                : { records };
            }
          }
          scanCursor = next;
          after = undefined;
        } while (scanCursor !== '0');
      }
      return { records };
    },

    /**
     * Native expiry removes dead records on its own; this sweeps up any whose `PEXPIREAT` was
     * lost (a record restored from an old dump, a key persisted by hand). One SCAN pass (of
     * every master, on a Cluster).
     */
    async purgeExpired(options = {}) {
      const limit = options.limit ?? Number.POSITIVE_INFINITY;
      if (options.limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
        throw new InvalidArgumentError(
          `redis store: purgeExpired limit must be a non-negative integer, got ${options.limit}`,
        );
      }
      let removed = 0;
      for (const target of await scanTargets()) {
        let cursor = '0';
        do {
          const [next, keys] = await scan(target, cursor);
          for (const redisKey of keys) {
            if (removed >= limit) return removed;
            if ((await scripts.run('purge', [redisKey, `${redisKey}:s`], [])) === 1) removed++;
          }
          cursor = next;
        } while (cursor !== '0');
      }
      return removed;
    },

    async close() {
      // The client is the caller's; only wait for batches still running.
      await Promise.all([begins.settled(), completes.settled()]);
    },
  };
}

/** A begin call: its key, and its arguments as the scripts read them. */
interface BeginInput {
  key: string;
  fingerprint: string;
  lease: string;
  ttl: string;
}

/** A complete call: its key, and its arguments as the scripts read them. */
interface CompleteInput {
  key: string;
  token: string;
  result: string;
  ttl: string;
}

const OK: FencedResult = { kind: 'ok' };
const LOST: FencedResult = { kind: 'lease_lost' };

/** The result of one begin from its script reply (single or from a batch). */
function beginReply(key: string, reply: unknown): BeginResult {
  if (typeof reply !== 'string') throw unexpected('begin', reply);
  const first = reply[0];
  if (first === 'e') return { kind: 'existing', record: recordFromReply(key, reply) };
  // A record without steps comes back as it is stored, starting with its status.
  if (first === 'c' || first === 'f' || first === 'i') {
    return { kind: 'existing', record: recordFromText(key, reply, {}) };
  }
  const match = /^a (\d+) (\d+) (\d+) ([01]) /.exec(reply);
  if (!match) throw unexpected('begin', reply);
  return {
    kind: 'acquired',
    token: parseInteger(key, 'token', match[1]),
    leaseUntil: parseInteger(key, 'leaseUntil', match[2]),
    attempts: parseInteger(key, 'attempts', match[3]),
    takeover: match[4] === '1',
    steps: stepsFromList(key, parseJson(key, reply.slice(match[0].length))),
  };
}

/** The replies of a batch script: one per call, or the whole batch fails. */
function batchReplies(operation: string, reply: unknown, count: number): unknown[] {
  if (!Array.isArray(reply) || reply.length !== count) throw unexpected(operation, reply);
  return reply;
}

/** A call's own outcome from a batch: its result, or its own error thrown. */
function outcomeOf<T>(outcome: T | Error): T {
  if (outcome instanceof Error) throw outcome;
  return outcome;
}

/** Whether the client is an ioredis Cluster (the keys of one script must share a slot). */
function isCluster(client: RedisLike): boolean {
  return (client as { isCluster?: unknown }).isCluster === true;
}

function unexpected(operation: string, reply: unknown): Error {
  return toStoreError(new Error(`unexpected reply ${JSON.stringify(reply)}`), operation);
}

/**
 * A list cursor is `[<node>.]<scan cursor>[:<base64url of the last key returned>]`: `node` is
 * the index of the Cluster master being scanned (absent for the first, and on a standalone
 * server).
 */
function makeCursor(node: number, scanCursor: string, after?: string): string {
  const where = node === 0 ? scanCursor : `${node}.${scanCursor}`;
  return after === undefined ? where : `${where}:${encodeKeyCursor(after)}`;
}

interface ListPosition {
  node: number;
  scanCursor: string;
  after?: string;
}

function parseCursor(cursor: string | undefined): ListPosition {
  if (cursor === undefined) return { node: 0, scanCursor: '0' };
  const match =
    typeof cursor === 'string' ? /^(?:(\d{1,4})\.)?(\d+)(?::(.+))?$/.exec(cursor) : null;
  if (!match) {
    throw new InvalidArgumentError(
      `${STORE}: list cursor must be one a previous page returned, got ${JSON.stringify(cursor)}`,
    );
  }
  const position: ListPosition = { node: Number(match[1] ?? 0), scanCursor: match[2] as string };
  if (match[3] !== undefined) position.after = decodeKeyCursor(STORE, match[3]);
  return position;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
