/**
 * Group commit in the SQLite store, against real files: writes made in the same tick run in
 * one IMMEDIATE transaction, and each call is answered as if it ran alone.
 *
 * How a test sees the commits: in WAL mode every commit ends with a frame that carries the
 * database size (0 in the other frames). Counting those frames of the current WAL
 * generation counts the transactions that wrote, without touching the store.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import type { BeginResult } from '../../src/idempotency/store.js';
import { type SqliteStore, createSqliteStore } from '../../src/stores/sqlite/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { runTsx } from '../helpers/run-tsx.js';

const FP = 'f'.repeat(64);
const LEASE = 30_000;
const TTL = 3_600_000;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-batch-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Commits in the current generation of `path`'s WAL (0 when there is none). */
function commits(path: string): number {
  let wal: Buffer;
  try {
    wal = readFileSync(`${path}-wal`);
  } catch {
    return 0;
  }
  if (wal.length < 32) return 0;
  const pageSize = wal.readUInt32BE(8);
  const salt1 = wal.readUInt32BE(16);
  const salt2 = wal.readUInt32BE(20);
  let count = 0;
  for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
    if (wal.readUInt32BE(at + 8) !== salt1 || wal.readUInt32BE(at + 12) !== salt2) break;
    if (wal.readUInt32BE(at + 4) !== 0) count++;
  }
  return count;
}

async function acquire(store: SqliteStore, key: string): Promise<number> {
  const begun = await store.begin(key, FP, LEASE, TTL);
  if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  return begun.token;
}

/** One operation on a new key: begin, the handler's own `work` (if any), then complete. */
async function runOperation(
  store: SqliteStore,
  key: string,
  work?: () => Promise<unknown>,
): Promise<void> {
  const token = await acquire(store, key);
  await work?.();
  const done = await store.complete(key, token, '"r"', TTL);
  if (done.kind !== 'ok') throw new Error(`complete of ${key}: ${done.kind}`);
}

/** Every outcome of `calls`, started in one tick: values, or the errors they threw. */
async function settle<T extends readonly (() => Promise<unknown>)[]>(
  calls: T,
): Promise<Array<PromiseSettledResult<unknown>>> {
  return Promise.allSettled(calls.map((call) => call()));
}

function opened(path: string, clock: FakeClock, batch = true): SqliteStore {
  return createSqliteStore({ path, clock, batch });
}

/** What the store has learned about recent begins (private: read for the test only). */
function beginOrder(store: SqliteStore): { insertFirst(): boolean } {
  return (store as unknown as { order: { insertFirst(): boolean } }).order;
}

/**
 * 20 new keys in one batch: most recent keys were new, so the begins of the next batches
 * insert first instead of reading their keys first.
 */
async function primeInsertFirst(store: SqliteStore): Promise<void> {
  await Promise.all(
    Array.from({ length: 20 }, (_, i) => store.begin(`prime-${i}`, FP, LEASE, TTL)),
  );
  expect(beginOrder(store).insertFirst()).toBe(true);
}

/** Record states a begin can meet, and the fingerprint each begin of them sends. */
const STATE_KEYS = [
  'new-1',
  'new-2',
  'done',
  'done-other-fp',
  'failed',
  'live',
  'released',
  'released-other-fp',
  'expired',
];

function fingerprintFor(key: string): string {
  return key.endsWith('other-fp') ? 'other' : FP;
}

/** Leaves the records of {@link STATE_KEYS} (but the new ones) in their states. */
async function seedStates(store: SqliteStore, clock: FakeClock): Promise<void> {
  const done = await acquire(store, 'done');
  await store.complete('done', done, '"r-done"', TTL);
  const other = await acquire(store, 'done-other-fp');
  await store.complete('done-other-fp', other, '"r-other"', TTL);
  const failed = await acquire(store, 'failed');
  await store.fail('failed', failed, '"e"', TTL);
  await acquire(store, 'live');
  await store.release('released', await acquire(store, 'released'));
  await store.release('released-other-fp', await acquire(store, 'released-other-fp'));
  const expiring = await store.begin('expired', FP, 100, 200);
  if (expiring.kind !== 'acquired') throw new Error('expected to acquire expired');
  await clock.advance(1000);
}

/** The right answers of begins on {@link STATE_KEYS}, in order. */
function expectStateAnswers(answers: BeginResult[]): void {
  expect(answers.map((a) => (a.kind === 'acquired' ? 'acquired' : a.record.status))).toEqual([
    'acquired',
    'acquired',
    'completed',
    'completed',
    'failed',
    'in_progress',
    'acquired',
    'in_progress',
    'acquired',
  ]);
  expect(answers[6]).toMatchObject({ kind: 'acquired', takeover: true, attempts: 2 });
  expect(answers[8]).toMatchObject({ kind: 'acquired', takeover: false, attempts: 1 });
}

describe('sqlite store: group commit', () => {
  it('runs a mix of fresh, replay and fenced calls of one tick in one commit, each as if alone', async () => {
    const path = join(dir, 'mix.sqlite');
    const clock = new FakeClock();
    const store = opened(path, clock);
    const done = await acquire(store, 'done');
    await store.complete('done', done, '"r-done"', TTL);
    const live = await acquire(store, 'live');
    const toComplete = await acquire(store, 'to-complete');
    const toFail = await acquire(store, 'to-fail');
    const toRelease = await acquire(store, 'to-release');
    const toBeat = await acquire(store, 'to-beat');
    const toStep = await acquire(store, 'to-step');
    const stale = await acquire(store, 'stale');
    await store.release('stale', stale);
    await clock.advance(1000);
    const taken = await acquire(store, 'stale'); // a takeover: `stale` is now a fenced token
    const before = commits(path);

    const results = await settle([
      () => store.begin('fresh-1', FP, LEASE, TTL),
      () => store.begin('fresh-2', FP, LEASE, TTL),
      () => store.begin('fresh-3', FP, LEASE, TTL),
      () => store.begin('done', FP, LEASE, TTL),
      () => store.begin('live', FP, LEASE, TTL),
      () => store.complete('to-complete', toComplete, '"r"', TTL),
      () => store.fail('to-fail', toFail, '"e"', TTL),
      () => store.release('to-release', toRelease),
      () => store.heartbeat('to-beat', toBeat, 60_000),
      () => store.saveStep('to-step', toStep, 'charge', '"ch_1"'),
      () => store.complete('stale', stale, '"too late"', TTL),
      () => store.complete('done', done, '"again"', TTL),
    ]);
    const values = results.map((r) => (r.status === 'fulfilled' ? r.value : r.reason));
    // Seven operations acquired here are still open: even the first write of the tick joins
    // the batch, and all of them share one commit.
    expect(commits(path) - before).toBe(1);

    for (const fresh of values.slice(0, 3)) {
      expect(fresh).toMatchObject({ kind: 'acquired', attempts: 1, takeover: false });
    }
    expect(values[3]).toMatchObject({
      kind: 'existing',
      record: { key: 'done', status: 'completed', result: '"r-done"', token: done },
    });
    expect(values[4]).toMatchObject({
      kind: 'existing',
      record: { key: 'live', status: 'in_progress', token: live },
    });
    expect(values.slice(5, 8)).toEqual([{ kind: 'ok' }, { kind: 'ok' }, { kind: 'ok' }]);
    expect(values[8]).toEqual({ kind: 'ok', leaseUntil: clock.now() + 60_000 });
    expect(values[9]).toEqual({ kind: 'ok' });
    expect(values[10]).toEqual({ kind: 'lease_lost' });
    expect(values[11]).toEqual({ kind: 'lease_lost' });

    // What was committed is what each call answered.
    for (const [i, key] of ['fresh-1', 'fresh-2', 'fresh-3'].entries()) {
      const begun = values[i] as BeginResult & { kind: 'acquired' };
      expect(await store.get(key)).toMatchObject({ status: 'in_progress', token: begun.token });
    }
    expect(await store.get('to-complete')).toMatchObject({ status: 'completed', result: '"r"' });
    expect(await store.get('to-fail')).toMatchObject({ status: 'failed', error: '"e"' });
    expect(await store.get('to-release')).toMatchObject({ status: 'in_progress', leaseUntil: 0 });
    expect(await store.get('to-beat')).toMatchObject({ leaseUntil: clock.now() + 60_000 });
    expect(await store.get('to-step')).toMatchObject({ steps: { charge: '"ch_1"' } });
    expect(await store.get('stale')).toMatchObject({ status: 'in_progress', token: taken });
    expect(await store.get('done')).toMatchObject({ status: 'completed', result: '"r-done"' });
    await store.close();
  });

  it('decides the begins of a batch alike whether it reads their keys first or inserts first', async () => {
    // The store learns from recent begins whether keys tend to be new: then a batch's begins
    // skip the read and insert at once. Every record state must get the same answer and
    // leave the same row either way.
    async function run(insertFirst: boolean) {
      const path = join(dir, `order-${insertFirst}.sqlite`);
      const clock = new FakeClock();
      const store = opened(path, clock);
      if (insertFirst) await primeInsertFirst(store);
      await seedStates(store, clock);
      const internals = store as unknown as {
        order: { insertFirst(): boolean };
        statements: { select: { get(...args: unknown[]): unknown } };
      };
      expect(internals.order.insertFirst()).toBe(insertFirst);
      // Counts the reads of a record by key (a pass-through on the real statement).
      const select = internals.statements.select;
      const get = select.get.bind(select);
      let reads = 0;
      select.get = (...args: unknown[]) => {
        reads++;
        return get(...args);
      };

      const answers = await Promise.all([
        // The first begin of a tick runs alone; the others share a batch.
        store.begin('first', FP, LEASE, TTL),
        ...STATE_KEYS.map((key) => store.begin(key, fingerprintFor(key), LEASE, TTL)),
      ]);
      const rows = await Promise.all(STATE_KEYS.map((key) => store.get(key)));
      await store.close();
      return { answers: answers.slice(1), rows, reads };
    }
    const { reads: readsFirst, ...readFirst } = await run(false);
    const { reads: insertsFirst, ...insertFirst } = await run(true);
    expect(insertFirst).toEqual(readFirst);
    // Inserting first, the new keys were never read, and the others only once they conflicted.
    expect(insertsFirst).toBeLessThan(readsFirst);
    expectStateAnswers(readFirst.answers);
  });

  it.each([
    ['with group commit', true],
    ['without group commit', false],
  ])(
    'decides a begin alone alike whether it reads its key first or inserts first (%s)',
    async (_, batch) => {
      // A sequential caller: each begin awaited before the next, so each runs alone.
      async function run(insertFirst: boolean) {
        const path = join(dir, `alone-${batch}-${insertFirst}.sqlite`);
        const clock = new FakeClock();
        const store = opened(path, clock, batch);
        if (insertFirst) {
          for (let i = 0; i < 20; i++) await store.begin(`prime-${i}`, FP, LEASE, TTL);
        }
        expect(beginOrder(store).insertFirst()).toBe(insertFirst);
        await seedStates(store, clock);
        const answers: BeginResult[] = [];
        for (const key of STATE_KEYS) {
          // Seeding taught the store nothing else: the begin goes in the order under test.
          expect(beginOrder(store).insertFirst()).toBe(insertFirst);
          answers.push(await store.begin(key, fingerprintFor(key), LEASE, TTL));
          if (insertFirst && !key.startsWith('new')) {
            // Keep the order under test: a run of new keys between the record states.
            for (let i = 0; i < 12; i++) await store.begin(`${key}-pad-${i}`, FP, LEASE, TTL);
          }
        }
        const rows = await Promise.all(STATE_KEYS.map((key) => store.get(key)));
        await store.close();
        return { answers, rows };
      }
      const readFirst = await run(false);
      const insertFirst = await run(true);
      expect(insertFirst).toEqual(readFirst);
      expectStateAnswers(readFirst.answers);
    },
  );

  it('answers a begin only once its write is committed, visible to another connection', async () => {
    const path = join(dir, 'visible.sqlite');
    const store = opened(path, new FakeClock());
    await store.createSchema();
    const other = new Database(path, { readonly: true });
    const keys = Array.from({ length: 20 }, (_, i) => `k-${i}`);
    const seen = await Promise.all(
      keys.map(async (key) => {
        const begun = await store.begin(key, FP, LEASE, TTL);
        const row = other
          .prepare('SELECT token FROM reprocess_idempotency WHERE key = ?')
          .get(key) as { token: number } | undefined;
        return { begun, row };
      }),
    );
    for (const { begun, row } of seen) {
      expect(begun.kind).toBe('acquired');
      expect(row?.token).toBe(begun.kind === 'acquired' ? begun.token : undefined);
    }
    other.close();
    await store.close();
  });

  it.each([
    ['reading first', false],
    ['inserting first', true],
  ])(
    'fails a begin on a corrupt record alone, inside a batch that commits the others (%s)',
    async (_, insertFirst) => {
      const path = join(dir, 'corrupt-steps.sqlite');
      const clock = new FakeClock();
      const store = opened(path, clock);
      if (insertFirst) await primeInsertFirst(store);
      const expired = await acquire(store, 'expired');
      await store.saveStep('expired', expired, 'charge', '"ch_1"');
      const a = await acquire(store, 'a');
      const odd = await acquire(store, 'odd');
      await store.complete('odd', odd, '"r"', TTL);
      const raw = new Database(path);
      // Steps that are not an object: the takeover refuses them before writing.
      raw.prepare(`UPDATE reprocess_idempotency SET steps = '[1]' WHERE key = 'expired'`).run();
      // An unknown status: the read of the batch cannot make a record of it.
      raw.prepare(`UPDATE reprocess_idempotency SET status = 'done' WHERE key = 'odd'`).run();
      raw.close();
      await clock.advance(LEASE + 1000);
      const before = commits(path);

      const [first, takeover, doneA, fresh, unknown] = await settle([
        () => store.begin('first', FP, LEASE, TTL),
        () => store.begin('expired', FP, LEASE, TTL),
        () => store.complete('a', a, '"ra"', TTL),
        () => store.begin('fresh', FP, LEASE, TTL),
        () => store.begin('odd', FP, LEASE, TTL),
      ]);
      expect(commits(path) - before).toBe(2);
      expect(unknown?.status).toBe('rejected');
      expect(
        isReprocessError((unknown as PromiseRejectedResult).reason, ErrorCode.RECORD_CORRUPT),
      ).toBe(true);
      expect(first).toMatchObject({ status: 'fulfilled', value: { kind: 'acquired' } });
      expect(takeover?.status).toBe('rejected');
      const error = (takeover as PromiseRejectedResult).reason;
      expect(isReprocessError(error, ErrorCode.RECORD_CORRUPT), String(error)).toBe(true);
      expect(doneA).toEqual({ status: 'fulfilled', value: { kind: 'ok' } });
      expect(fresh).toMatchObject({ status: 'fulfilled', value: { kind: 'acquired' } });
      expect(await store.get('a')).toMatchObject({ status: 'completed', result: '"ra"' });
      expect(await store.get('fresh')).toMatchObject({ status: 'in_progress' });
      const check = new Database(path, { readonly: true });
      expect(
        check
          .prepare(`SELECT token, attempts FROM reprocess_idempotency WHERE key = 'expired'`)
          .get(),
      ).toEqual({ token: expired, attempts: 1 });
      check.close();
      await store.close();
    },
  );

  it('fails a call that SQLite refuses alone: the batch is rolled back and each call runs alone', async () => {
    const path = join(dir, 'corrupt.sqlite');
    const clock = new FakeClock();
    const store = opened(path, clock);
    const bad = await acquire(store, 'bad');
    const expired = await acquire(store, 'expired');
    await store.saveStep('expired', expired, 'charge', '"ch_1"');
    const a = await acquire(store, 'a');
    const b = await acquire(store, 'b');
    const raw = new Database(path);
    // Invalid JSON: json_patch fails inside the UPDATE (a SQLite error, not one of ours).
    raw.prepare(`UPDATE reprocess_idempotency SET steps = '{"x": ' WHERE key = 'bad'`).run();
    // Steps that are not an object: the takeover refuses them before writing.
    raw.prepare(`UPDATE reprocess_idempotency SET steps = '[1]' WHERE key = 'expired'`).run();
    raw.close();
    await clock.advance(LEASE + 1000);

    const results = await settle([
      () => store.begin('first', FP, LEASE, TTL),
      () => store.complete('a', a, '"ra"', TTL),
      () => store.saveStep('bad', bad, 'email', '"em"'),
      () => store.begin('expired', FP, LEASE, TTL),
      () => store.complete('b', b, '"rb"', TTL),
      () => store.begin('fresh', FP, LEASE, TTL),
    ]);
    const [first, doneA, step, takeover, doneB, fresh] = results;
    expect(first).toMatchObject({ status: 'fulfilled', value: { kind: 'acquired' } });
    expect(doneA).toEqual({ status: 'fulfilled', value: { kind: 'ok' } });
    expect(doneB).toEqual({ status: 'fulfilled', value: { kind: 'ok' } });
    expect(fresh).toMatchObject({ status: 'fulfilled', value: { kind: 'acquired' } });
    for (const failed of [step, takeover]) {
      expect(failed?.status).toBe('rejected');
      const error = (failed as PromiseRejectedResult).reason;
      expect(isReprocessError(error, ErrorCode.RECORD_CORRUPT), String(error)).toBe(true);
    }
    expect(await store.get('a')).toMatchObject({ status: 'completed', result: '"ra"' });
    expect(await store.get('b')).toMatchObject({ status: 'completed', result: '"rb"' });
    expect(await store.get('fresh')).toMatchObject({ status: 'in_progress' });
    // The refused takeover wrote nothing: same token, same attempts.
    const raw2 = new Database(path, { readonly: true });
    expect(
      raw2.prepare(`SELECT token, attempts FROM reprocess_idempotency WHERE key = 'expired'`).get(),
    ).toEqual({ token: expired, attempts: 1 });
    raw2.close();
    await store.close();
  });

  it('lets exactly one of many concurrent begins on one key acquire (fresh, then a takeover)', async () => {
    const path = join(dir, 'one-key.sqlite');
    const clock = new FakeClock();
    const store = opened(path, clock);
    const race = () =>
      Promise.all(Array.from({ length: 50 }, () => store.begin('k', FP, LEASE, TTL)));

    const fresh = await race();
    const winners = fresh.filter((r) => r.kind === 'acquired');
    expect(winners).toHaveLength(1);
    const token = (winners[0] as BeginResult & { kind: 'acquired' }).token;
    for (const r of fresh) {
      if (r.kind === 'existing') expect(r.record.token).toBe(token);
    }

    await clock.advance(LEASE + 1);
    const again = await race();
    const takers = again.filter((r) => r.kind === 'acquired');
    expect(takers).toHaveLength(1);
    expect(takers[0]).toMatchObject({ attempts: 2, takeover: true });
    const second = (takers[0] as BeginResult & { kind: 'acquired' }).token;
    expect(second).toBeGreaterThan(token);
    for (const r of again) {
      if (r.kind === 'existing') expect(r.record.token).toBe(second);
    }
    // The old token is fenced, in a batch as alone.
    const fenced = await Promise.all([
      store.complete('k', token, '"old"', TTL),
      store.heartbeat('k', token, LEASE),
      store.complete('k', second, '"new"', TTL),
    ]);
    expect(fenced).toEqual([{ kind: 'lease_lost' }, { kind: 'lease_lost' }, { kind: 'ok' }]);
    expect(await store.get('k')).toMatchObject({ status: 'completed', result: '"new"' });
    await store.close();
  });

  it('runs a repeated key in a later batch, decided after the first', async () => {
    const path = join(dir, 'repeat.sqlite');
    const store = opened(path, new FakeClock());
    const token = await acquire(store, 'k');
    const [beat, done, late] = await Promise.all([
      store.heartbeat('k', token, LEASE),
      store.complete('k', token, '"r"', TTL),
      store.saveStep('k', token, 'after', '"x"'),
    ]);
    expect(beat.kind).toBe('ok');
    expect(done).toEqual({ kind: 'ok' });
    // Decided after the complete, as it would be alone: the record is no longer in progress.
    expect(late).toEqual({ kind: 'lease_lost' });
    expect((await store.get('k'))?.steps).toEqual({});
    await store.close();
  });

  it('fails every call of a batch with StoreUnavailableError when another process holds the lock', async () => {
    const path = join(dir, 'busy.sqlite');
    const store = createSqliteStore({ path, busyTimeoutMs: 20, busyRetries: 1 });
    await store.createSchema();
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const results = await settle(
        Array.from({ length: 10 }, (_, i) => () => store.begin(`k-${i}`, FP, LEASE, TTL)),
      );
      for (const result of results) {
        expect(result.status).toBe('rejected');
        const error = (result as PromiseRejectedResult).reason as Error;
        expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
        expect((error.cause as { code?: string }).code).toMatch(/^SQLITE_BUSY/);
      }
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect((await store.list()).records).toEqual([]);
    const after = await Promise.all(
      Array.from({ length: 10 }, (_, i) => store.begin(`k-${i}`, FP, LEASE, TTL)),
    );
    expect(after.every((r) => r.kind === 'acquired')).toBe(true);
    await store.close();
  });

  it('under a lock held past busy_timeout, fails only the calls that needed it: a replay and a live lease in the batch keep their answers', async () => {
    const path = join(dir, 'busy-reads.sqlite');
    for (const batch of [true, false]) {
      const table = batch ? 'batched' : 'alone';
      const store = createSqliteStore({
        path,
        table,
        batch,
        busyTimeoutMs: 20,
        busyRetries: 1,
        replayCache: false,
      });
      const done = await acquire(store, 'done');
      await store.complete('done', done, '"R"', TTL);
      await acquire(store, 'live');
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE');
      let results: Array<PromiseSettledResult<unknown>>;
      try {
        // One tick: two writes (new keys) beside two begins that a read answers.
        results = await settle(
          ['new-1', 'done', 'new-2', 'live'].map((key) => () => store.begin(key, FP, LEASE, TTL)),
        );
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
      const [first, replay, second, live] = results;
      for (const write of [first, second]) {
        expect(write?.status, table).toBe('rejected');
        const error = (write as PromiseRejectedResult).reason as Error;
        expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE), table).toBe(true);
      }
      expect(replay, table).toMatchObject({
        status: 'fulfilled',
        value: { kind: 'existing', record: { status: 'completed', result: '"R"' } },
      });
      expect(live, table).toMatchObject({
        status: 'fulfilled',
        value: { kind: 'existing', record: { status: 'in_progress' } },
      });
      // The writes that failed wrote nothing: the keys are still free.
      expect((await store.begin('new-1', FP, LEASE, TTL)).kind).toBe('acquired');
      await store.close();
    }
  });

  it('commits once per call with batch: false, and for a sequential caller', async () => {
    const off = join(dir, 'off.sqlite');
    const unbatched = opened(off, new FakeClock(), false);
    await unbatched.createSchema();
    let before = commits(off);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) => unbatched.begin(`k-${i}`, FP, LEASE, TTL)),
    );
    expect(commits(off) - before).toBe(5);
    await unbatched.close();

    const on = join(dir, 'on.sqlite');
    const store = opened(on, new FakeClock());
    await store.createSchema();
    before = commits(on);
    for (let i = 0; i < 5; i++) await runOperation(store, `k-${i}`);
    expect(commits(on) - before).toBe(10);
    await store.close();
  });

  it('commits together the calls of messages an async iterator starts one by one in a turn', async () => {
    // A consumer's `for await` over buffered messages starts one handler per few microtasks;
    // their writes still share transactions (gathered until the event loop's next turn).
    const path = join(dir, 'iterator.sqlite');
    const store = opened(path, new FakeClock());
    await store.createSchema();
    async function* deliveries(): AsyncGenerator<string> {
      for (let i = 0; i < 32; i++) yield `m-${i}`;
    }
    const before = commits(path);
    const handled: Array<Promise<void>> = [];
    for await (const key of deliveries()) handled.push(runOperation(store, key));
    await Promise.all(handled);
    // 64 writes: the first calls of the turn run alone, the rest in a few batches. (Gathered
    // only until the next microtask, the same 32 messages took 26 commits.)
    expect(commits(path) - before).toBeLessThanOrEqual(8);
    await store.close();
  });

  it('commits together the writes of requests that each start in an I/O callback of their own', async () => {
    // A server calls its handler once per request, each in a callback of its own (its own
    // tick); while the requests run side by side, their writes still share transactions.
    const path = join(dir, 'requests.sqlite');
    const store = opened(path, new FakeClock());
    await store.createSchema();
    const before = commits(path);
    await Promise.all(
      Array.from(
        { length: 16 },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            setImmediate(() => {
              // The handler's own I/O between begin and complete.
              const io = () => new Promise((r) => setImmediate(r));
              runOperation(store, `request-${i}`, io).then(resolve, reject);
            });
          }),
      ),
    );
    // 32 writes: the first two requests begin alone, the others' writes share a few commits.
    // (Deciding by the tick alone, every one of the 32 committed on its own.)
    expect(commits(path) - before).toBeLessThanOrEqual(8);
    await store.close();
  });

  it('runs its batches while a test fakes timers', async () => {
    const path = join(dir, 'fake-timers.sqlite');
    const store = opened(path, new FakeClock());
    await store.createSchema();
    vi.useFakeTimers();
    try {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => store.begin(`k-${i}`, FP, LEASE, TTL)),
      );
      expect(results.map((r) => r.kind)).toEqual(Array(8).fill('acquired'));
    } finally {
      vi.useRealTimers();
    }
    await store.close();
  });

  it('answers the calls already made before close() closes the file', async () => {
    const path = join(dir, 'close.sqlite');
    const store = opened(path, new FakeClock());
    const calls = Array.from({ length: 10 }, (_, i) => store.begin(`k-${i}`, FP, LEASE, TTL));
    const closing = store.close();
    const results = await Promise.all(calls);
    await closing;
    expect(results.every((r) => r.kind === 'acquired')).toBe(true);
    const raw = new Database(path, { readonly: true });
    expect(raw.prepare('SELECT count(*) AS n FROM reprocess_idempotency').get()).toEqual({ n: 10 });
    raw.close();
  });

  it('rejects a bad batch option with InvalidArgumentError', () => {
    for (const batch of [0, 'yes', { maxBatchSize: 0 }, { maxBatchSize: 1.5 }, null]) {
      expect(() => createSqliteStore({ path: ':memory:', batch: batch as never })).toThrow(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
      );
    }
  });
});

describe('sqlite store: group commit across processes', () => {
  const KEYS = 400;
  // Each process runs 32 loops at once over the same keys, so its writes leave in batches.
  const script = (path: string, worker: number) => `
    const { createSqliteStore } = await import(${JSON.stringify(pathToFileURL(join(process.cwd(), 'src/stores/sqlite/index.ts')).href)});
    const store = createSqliteStore({ path: ${JSON.stringify(path)} });
    await store.createSchema();
    const acquired = [];
    let next = 0;
    async function loop() {
      while (next < ${KEYS}) {
        const key = 'race-' + next++;
        const begun = await store.begin(key, 'fp', 60000, 3600000);
        if (begun.kind !== 'acquired') continue;
        acquired.push({ key, token: begun.token });
        const done = await store.complete(key, begun.token, JSON.stringify({ worker: ${worker} }), 3600000);
        if (done.kind !== 'ok') throw new Error('lost the lease on ' + key);
      }
    }
    await Promise.all(Array.from({ length: 32 }, loop));
    await store.close();
    process.stdout.write(JSON.stringify(acquired));
  `;

  it('4 processes with 32 calls in flight each: every key acquired and completed exactly once', async () => {
    const path = join(dir, 'race.sqlite');
    const seed = createSqliteStore({ path });
    await seed.createSchema();
    await seed.close();
    const runs = await Promise.all(
      Array.from({ length: 4 }, (_, worker) =>
        runTsx(['--input-type=module', '-e', script(path, worker)]),
      ),
    );
    const winners = new Map<string, Array<{ worker: number; token: number }>>();
    runs.forEach((run, worker) => {
      expect(run.code, run.stderr).toBe(0);
      for (const { key, token } of JSON.parse(run.stdout) as Array<{
        key: string;
        token: number;
      }>) {
        winners.set(key, [...(winners.get(key) ?? []), { worker, token }]);
      }
    });
    expect(winners.size).toBe(KEYS);
    expect([...winners].filter(([, list]) => list.length !== 1)).toEqual([]);
    const store = createSqliteStore({ path });
    for (const [key, [winner]] of winners) {
      expect(await store.get(key)).toMatchObject({
        status: 'completed',
        attempts: 1,
        token: winner?.token,
        result: JSON.stringify({ worker: winner?.worker }),
      });
    }
    await store.close();
  }, 120_000);
});
