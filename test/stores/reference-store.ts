/**
 * The reference model of the store contract: the simplest store that is obviously right.
 * Synchronous, one map, no concurrency of its own. The model-based property test runs
 * random command sequences against it and against a real store and compares them; the
 * conformance suite runs against it too, so the suite itself is checked against a model.
 */
import type { Clock } from '../../src/clock.js';
import { checkWellFormedKey, checkWellFormedText } from '../../src/stores/well-formed.js';
import type {
  BeginResult,
  FencedResult,
  HeartbeatResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  ListPage,
} from '../../src/idempotency/store.js';
import {
  decodeKeyCursor,
  encodeKeyCursor,
  listLimit,
  listStatus,
} from '../../src/stores/list-options.js';

/** The model, with synchronous twins of every store method for the property test. */
export class ReferenceStore implements IdempotencyStore {
  readonly name = 'reference';
  private readonly records = new Map<string, IdempotencyRecord>();
  /** The greatest token ever issued, so a deleted key never sees a token again. */
  private highWater = 0;

  constructor(private readonly clock: Clock) {}

  beginSync(key: string, fingerprint: string, leaseMs: number, ttlMs: number): BeginResult {
    checkWellFormedKey('reference store', key);
    checkWellFormedText('reference store', 'fingerprint', fingerprint);
    const now = this.clock.now();
    const old = this.records.get(key);
    const fresh = !old || old.expiresAt <= now;
    const takeover =
      !fresh &&
      old.status === 'in_progress' &&
      old.leaseUntil <= now &&
      old.fingerprint === fingerprint;
    if (!fresh && !takeover) return { kind: 'existing', record: copy(old) };

    const token = Math.max(this.highWater + 1, now * 1000, (old?.token ?? 0) + 1);
    this.highWater = token;
    const record: IdempotencyRecord = {
      key,
      fingerprint,
      status: 'in_progress',
      token,
      attempts: takeover ? old.attempts + 1 : 1,
      leaseUntil: now + leaseMs,
      expiresAt: takeover ? Math.max(old.expiresAt, now + leaseMs) : now + Math.max(ttlMs, leaseMs),
      steps: takeover ? { ...old.steps } : {},
      createdAt: takeover ? old.createdAt : now,
      updatedAt: now,
    };
    this.records.set(key, record);
    return {
      kind: 'acquired',
      token,
      leaseUntil: record.leaseUntil,
      attempts: record.attempts,
      steps: { ...record.steps },
      takeover,
    };
  }

  private held(key: string, token: number): IdempotencyRecord | undefined {
    const record = this.records.get(key);
    return record && record.token === token && record.status === 'in_progress' ? record : undefined;
  }

  completeSync(key: string, token: number, result: string, ttlMs: number): FencedResult {
    checkWellFormedText('reference store', 'result', result);
    const record = this.held(key, token);
    if (!record) return { kind: 'lease_lost' };
    const now = this.clock.now();
    Object.assign(record, {
      status: 'completed',
      result,
      leaseUntil: 0,
      expiresAt: now + ttlMs,
      updatedAt: now,
    });
    return { kind: 'ok' };
  }

  failSync(key: string, token: number, error: string, ttlMs: number): FencedResult {
    checkWellFormedText('reference store', 'error', error);
    const record = this.held(key, token);
    if (!record) return { kind: 'lease_lost' };
    const now = this.clock.now();
    Object.assign(record, {
      status: 'failed',
      error,
      leaseUntil: 0,
      expiresAt: now + ttlMs,
      updatedAt: now,
    });
    return { kind: 'ok' };
  }

  releaseSync(key: string, token: number, ttlMs?: number): FencedResult {
    const record = this.held(key, token);
    if (!record) return { kind: 'lease_lost' };
    const now = this.clock.now();
    record.leaseUntil = 0;
    if (ttlMs !== undefined) record.expiresAt = Math.max(record.expiresAt, now + ttlMs);
    record.updatedAt = now;
    return { kind: 'ok' };
  }

  heartbeatSync(key: string, token: number, leaseMs: number): HeartbeatResult {
    const record = this.held(key, token);
    if (!record) return { kind: 'lease_lost' };
    const now = this.clock.now();
    record.leaseUntil = now + leaseMs;
    record.expiresAt = Math.max(record.expiresAt, record.leaseUntil);
    record.updatedAt = now;
    return { kind: 'ok', leaseUntil: record.leaseUntil };
  }

  saveStepSync(key: string, token: number, name: string, result: string): FencedResult {
    checkWellFormedText('reference store', 'step name', name);
    checkWellFormedText('reference store', 'step result', result);
    const record = this.held(key, token);
    if (!record) return { kind: 'lease_lost' };
    record.steps = { ...record.steps, [name]: result };
    record.updatedAt = this.clock.now();
    return { kind: 'ok' };
  }

  getSync(key: string): IdempotencyRecord | undefined {
    const record = this.records.get(key);
    return record && copy(record);
  }

  deleteSync(key: string): boolean {
    return this.records.delete(key);
  }

  async begin(key: string, fingerprint: string, leaseMs: number, ttlMs: number) {
    return this.beginSync(key, fingerprint, leaseMs, ttlMs);
  }
  async complete(key: string, token: number, result: string, ttlMs: number) {
    return this.completeSync(key, token, result, ttlMs);
  }
  async fail(key: string, token: number, error: string, ttlMs: number) {
    return this.failSync(key, token, error, ttlMs);
  }
  async release(key: string, token: number, ttlMs?: number) {
    return this.releaseSync(key, token, ttlMs);
  }
  async heartbeat(key: string, token: number, leaseMs: number) {
    return this.heartbeatSync(key, token, leaseMs);
  }
  async saveStep(key: string, token: number, name: string, result: string) {
    return this.saveStepSync(key, token, name, result);
  }
  async get(key: string) {
    return this.getSync(key);
  }
  async delete(key: string) {
    return this.deleteSync(key);
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    // The model checks its arguments as every store does (the shared checks).
    const limit = listLimit('reference store', options.limit);
    const status = listStatus('reference store', options.status);
    const after =
      options.cursor === undefined ? undefined : decodeKeyCursor('reference store', options.cursor);
    const keys = [...this.records.keys()]
      .sort()
      .filter((k) => after === undefined || k > after)
      .filter((k) => status === undefined || this.records.get(k)?.status === status);
    const page = keys.slice(0, limit);
    const records = page.flatMap((k) => {
      const record = this.getSync(k);
      return record ? [record] : [];
    });
    const last = page[page.length - 1];
    return keys.length > limit && last !== undefined
      ? { records, cursor: encodeKeyCursor(last) }
      : { records };
  }

  async purgeExpired(options: { limit?: number } = {}): Promise<number> {
    const now = this.clock.now();
    let removed = 0;
    for (const [key, record] of this.records) {
      if (options.limit !== undefined && removed >= options.limit) break;
      if (record.expiresAt <= now) {
        this.records.delete(key);
        removed++;
      }
    }
    return removed;
  }
}

function copy(record: IdempotencyRecord): IdempotencyRecord {
  return { ...record, steps: { ...record.steps } };
}
