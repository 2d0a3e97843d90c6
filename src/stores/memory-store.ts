import { type Clock, systemClock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  ListPage,
} from '../idempotency/store.js';
import { decodeKeyCursor, encodeKeyCursor, listLimit, listStatus } from './list-options.js';
import { setStep } from '../idempotency/set-step.js';
import { checkWellFormedKey, checkWellFormedText } from './well-formed.js';

/** Options of {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /** The store's clock for leases, expiry and tokens (default: the system clock). */
  clock?: Clock;
}

const STORE = 'memory store';

/**
 * An {@link IdempotencyStore} in process memory: for tests, the demo and single-process use.
 * Records do not survive the process. Every method runs to completion without yielding,
 * so each transition is atomic with respect to every other call in the process.
 *
 * Records are copied on the way in and out: a caller that mutates a record it was given
 * cannot change stored state.
 *
 * Fencing tokens are `max(last + 1, clock.now() * 1000)`, `last` being the last token the store
 * issued for any key: they grow across the whole store, so a token is never issued twice for
 * one key, even after its record was deleted, purged or expired, and the store keeps nothing
 * per key once its record is gone.
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): IdempotencyStore {
  const clock = options.clock ?? systemClock;
  const records = new Map<string, IdempotencyRecord>();
  let lastToken = 0;

  function nextToken(): number {
    lastToken = Math.max(lastToken + 1, Math.floor(clock.now()) * 1000);
    return lastToken;
  }

  /** The record when `token` still holds it and it is in progress; otherwise undefined. */
  function held(key: string, token: number): IdempotencyRecord | undefined {
    const record = records.get(key);
    if (record === undefined || record.token !== token || record.status !== 'in_progress') {
      return undefined;
    }
    return record;
  }

  const store: IdempotencyStore = {
    name: 'memory',
    leaseClock: clock,

    async begin(key, fingerprint, leaseMs, ttlMs): Promise<BeginResult> {
      checkKey(key);
      checkString(fingerprint, 'fingerprint');
      checkPositive(leaseMs, 'leaseMs');
      checkPositive(ttlMs, 'ttlMs');
      const now = clock.now();
      const existing = records.get(key);

      if (existing === undefined || existing.expiresAt <= now) {
        // No record, or a dead one: a new operation with no steps.
        const token = nextToken();
        const leaseUntil = now + leaseMs;
        records.set(key, {
          key,
          fingerprint,
          status: 'in_progress',
          token,
          attempts: 1,
          leaseUntil,
          expiresAt: Math.max(now + ttlMs, leaseUntil),
          steps: {},
          createdAt: now,
          updatedAt: now,
        });
        return { kind: 'acquired', token, leaseUntil, attempts: 1, steps: {}, takeover: false };
      }

      if (
        existing.status === 'in_progress' &&
        existing.leaseUntil <= now &&
        existing.fingerprint === fingerprint
      ) {
        // The holder's lease ended (crash, timeout or release): the same operation resumes.
        existing.token = nextToken();
        existing.attempts += 1;
        existing.leaseUntil = now + leaseMs;
        existing.expiresAt = Math.max(existing.expiresAt, existing.leaseUntil);
        existing.updatedAt = now;
        return {
          kind: 'acquired',
          token: existing.token,
          leaseUntil: existing.leaseUntil,
          attempts: existing.attempts,
          steps: { ...existing.steps },
          takeover: true,
        };
      }

      return { kind: 'existing', record: copy(existing) };
    },

    async complete(key, token, result, ttlMs): Promise<FencedResult> {
      checkString(result, 'result');
      checkPositive(ttlMs, 'ttlMs');
      const record = held(key, token);
      if (record === undefined) return { kind: 'lease_lost' };
      const now = clock.now();
      record.status = 'completed';
      record.result = result;
      record.leaseUntil = 0;
      record.expiresAt = now + ttlMs;
      record.updatedAt = now;
      return { kind: 'ok' };
    },

    async fail(key, token, error, ttlMs): Promise<FencedResult> {
      checkString(error, 'error');
      checkPositive(ttlMs, 'ttlMs');
      const record = held(key, token);
      if (record === undefined) return { kind: 'lease_lost' };
      const now = clock.now();
      record.status = 'failed';
      record.error = error;
      record.leaseUntil = 0;
      record.expiresAt = now + ttlMs;
      record.updatedAt = now;
      return { kind: 'ok' };
    },

    async release(key, token, ttlMs): Promise<FencedResult> {
      if (ttlMs !== undefined) checkPositive(ttlMs, 'ttlMs');
      const record = held(key, token);
      if (record === undefined) return { kind: 'lease_lost' };
      const now = clock.now();
      record.leaseUntil = 0;
      if (ttlMs !== undefined) record.expiresAt = Math.max(record.expiresAt, now + ttlMs);
      record.updatedAt = now;
      return { kind: 'ok' };
    },

    async heartbeat(key, token, leaseMs): Promise<HeartbeatResult> {
      checkPositive(leaseMs, 'leaseMs');
      const record = held(key, token);
      if (record === undefined) return { kind: 'lease_lost' };
      const now = clock.now();
      record.leaseUntil = now + leaseMs;
      record.expiresAt = Math.max(record.expiresAt, record.leaseUntil);
      record.updatedAt = now;
      return { kind: 'ok', leaseUntil: record.leaseUntil };
    },

    async saveStep(key, token, name, result): Promise<FencedResult> {
      checkString(name, 'step name');
      checkString(result, 'step result');
      const record = held(key, token);
      if (record === undefined) return { kind: 'lease_lost' };
      setStep(record.steps, name, result);
      record.updatedAt = clock.now();
      return { kind: 'ok' };
    },

    async get(key) {
      const record = records.get(key);
      return record === undefined ? undefined : copy(record);
    },

    async delete(key) {
      return records.delete(key);
    },

    async list(options: ListOptions = {}): Promise<ListPage> {
      const limit = listLimit(STORE, options.limit);
      const status = listStatus(STORE, options.status);
      const after =
        options.cursor === undefined ? undefined : decodeKeyCursor(STORE, options.cursor);
      const keys = [...records.keys()].sort();
      const page: IdempotencyRecord[] = [];
      let last: string | undefined;
      for (const key of keys) {
        if (after !== undefined && key <= after) continue;
        const record = records.get(key);
        if (record === undefined) continue;
        if (status !== undefined && record.status !== status) continue;
        if (page.length === limit) {
          // There is at least one more record: hand out a cursor.
          return { records: page, cursor: encodeKeyCursor(last as string) };
        }
        page.push(copy(record));
        last = key;
      }
      return { records: page };
    },

    async purgeExpired(options: { limit?: number } = {}) {
      const limit = options.limit ?? Number.POSITIVE_INFINITY;
      if (!(limit >= 0)) throw new InvalidArgumentError(`limit must be >= 0, got ${limit}`);
      const now = clock.now();
      let removed = 0;
      for (const [key, record] of records) {
        if (removed >= limit) break;
        if (record.expiresAt <= now) {
          records.delete(key);
          removed++;
        }
      }
      return removed;
    },

    async close() {
      // Nothing to release: the records live and die with this object.
    },
  };
  return store;
}

function copy(record: IdempotencyRecord): IdempotencyRecord {
  // Every field is a primitive except `steps`, whose values are strings.
  return { ...record, steps: { ...record.steps } };
}

function checkKey(key: unknown): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError(`store key must be a non-empty string, got ${typeof key}`);
  }
  // Not needed to keep keys apart here, but every store refuses such a key alike.
  checkWellFormedKey('memory store', key);
}

function checkString(value: unknown, what: string): void {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(`${what} must be a string, got ${typeof value}`);
  }
  // Kept as given here, but the other stores cannot keep it: refused alike everywhere.
  checkWellFormedText('memory store', what, value);
}

function checkPositive(value: unknown, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`${what} must be a finite number > 0, got ${String(value)}`);
  }
}
