import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const LEASE = 30_000;
const TTL = 3_600_000;

function setup() {
  const clock = new FakeClock();
  const store = createMemoryStore({ clock });
  return { clock, store };
}

async function acquire(store: IdempotencyStore, key = 'k', fingerprint = 'fp') {
  const begun = await store.begin(key, fingerprint, LEASE, TTL);
  if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  return begun;
}

// The shared conformance suite runs in test/stores/memory-conformance.test.ts; these are the
// memory store's own details (exact tokens, copies, argument checks).
describe('memory store', () => {
  it('acquires a new key with a clock-derived token, one attempt and no steps', async () => {
    const { clock, store } = setup();
    const begun = await acquire(store);
    expect(begun).toEqual({
      kind: 'acquired',
      token: clock.now() * 1000,
      leaseUntil: clock.now() + LEASE,
      attempts: 1,
      steps: {},
      takeover: false,
    });
    const record = await store.get('k');
    expect(record).toMatchObject({
      key: 'k',
      fingerprint: 'fp',
      status: 'in_progress',
      token: begun.token,
      attempts: 1,
      leaseUntil: clock.now() + LEASE,
      expiresAt: clock.now() + TTL,
      steps: {},
      createdAt: clock.now(),
    });
  });

  it('returns the existing record while the lease is live', async () => {
    const { clock, store } = setup();
    const first = await acquire(store);
    await clock.advance(LEASE - 1);
    const again = await store.begin('k', 'fp', LEASE, TTL);
    expect(again.kind).toBe('existing');
    if (again.kind === 'existing') {
      expect(again.record.status).toBe('in_progress');
      expect(again.record.token).toBe(first.token);
    }
  });

  it('exactly one of 100 concurrent begins acquires', async () => {
    const { store } = setup();
    const results = await Promise.all(
      Array.from({ length: 100 }, () => store.begin('hot', 'fp', LEASE, TTL)),
    );
    expect(results.filter((r) => r.kind === 'acquired')).toHaveLength(1);
  });

  it('takes over an ended lease with a greater token, keeping steps and counting attempts', async () => {
    const { clock, store } = setup();
    const first = await acquire(store);
    expect(await store.saveStep('k', first.token, 'charge', '"ch_1"')).toEqual({ kind: 'ok' });
    await clock.advance(LEASE);
    const second = await acquire(store);
    expect(second.takeover).toBe(true);
    expect(second.attempts).toBe(2);
    expect(second.steps).toEqual({ charge: '"ch_1"' });
    expect(second.token).toBeGreaterThan(first.token);
  });

  it('never acquires a live record under another fingerprint, even with its lease ended', async () => {
    const { clock, store } = setup();
    await acquire(store, 'k', 'fp-a');
    await clock.advance(LEASE + 1);
    const other = await store.begin('k', 'fp-b', LEASE, TTL);
    expect(other.kind).toBe('existing');
    if (other.kind === 'existing') expect(other.record.fingerprint).toBe('fp-a');
  });

  it('fences every write: a stale token writes nothing', async () => {
    const { clock, store } = setup();
    const stale = await acquire(store);
    await clock.advance(LEASE);
    const current = await acquire(store);
    const before = await store.get('k');

    expect(await store.complete('k', stale.token, '"late"', TTL)).toEqual({ kind: 'lease_lost' });
    expect(await store.fail('k', stale.token, '{}', TTL)).toEqual({ kind: 'lease_lost' });
    expect(await store.release('k', stale.token)).toEqual({ kind: 'lease_lost' });
    expect(await store.heartbeat('k', stale.token, LEASE)).toEqual({ kind: 'lease_lost' });
    expect(await store.saveStep('k', stale.token, 'x', '1')).toEqual({ kind: 'lease_lost' });
    expect(await store.get('k')).toEqual(before);

    expect(await store.complete('k', current.token, '"done"', TTL)).toEqual({ kind: 'ok' });
  });

  it('completes, then replays the completed record and never changes it', async () => {
    const { clock, store } = setup();
    const begun = await acquire(store);
    await clock.advance(10);
    expect(await store.complete('k', begun.token, '"r"', TTL)).toEqual({ kind: 'ok' });
    const done = await store.get('k');
    expect(done).toMatchObject({
      status: 'completed',
      result: '"r"',
      leaseUntil: 0,
      expiresAt: clock.now() + TTL,
    });
    // The completing token cannot write again.
    expect(await store.complete('k', begun.token, '"other"', TTL)).toEqual({ kind: 'lease_lost' });
    expect(await store.fail('k', begun.token, '{}', TTL)).toEqual({ kind: 'lease_lost' });
    const again = await store.begin('k', 'fp', LEASE, TTL);
    expect(again).toEqual({ kind: 'existing', record: done });
  });

  it('records a failure', async () => {
    const { store } = setup();
    const begun = await acquire(store);
    expect(await store.fail('k', begun.token, '{"name":"E"}', TTL)).toEqual({ kind: 'ok' });
    expect(await store.get('k')).toMatchObject({ status: 'failed', error: '{"name":"E"}' });
  });

  it('release ends the lease at once and keeps steps for the next attempt', async () => {
    const { store } = setup();
    const first = await acquire(store);
    await store.saveStep('k', first.token, 'a', '1');
    expect(await store.release('k', first.token)).toEqual({ kind: 'ok' });
    expect((await store.get('k'))?.leaseUntil).toBe(0);
    const next = await acquire(store);
    expect(next).toMatchObject({ attempts: 2, steps: { a: '1' }, takeover: true });
  });

  it('heartbeat extends the lease from now', async () => {
    const { clock, store } = setup();
    const begun = await acquire(store);
    await clock.advance(LEASE - 1);
    const beat = await store.heartbeat('k', begun.token, LEASE);
    expect(beat).toEqual({ kind: 'ok', leaseUntil: clock.now() + LEASE });
    await clock.advance(LEASE - 1);
    expect((await store.begin('k', 'fp', LEASE, TTL)).kind).toBe('existing');
  });

  it('starts afresh after expiry: new fingerprint allowed, no steps, greater token', async () => {
    const { clock, store } = setup();
    const first = await acquire(store, 'k', 'fp-a');
    await store.saveStep('k', first.token, 'a', '1');
    await store.complete('k', first.token, '"r"', TTL);
    await clock.advance(TTL);
    const fresh = await store.begin('k', 'fp-b', LEASE, TTL);
    expect(fresh).toMatchObject({ kind: 'acquired', attempts: 1, steps: {}, takeover: false });
    if (fresh.kind === 'acquired') expect(fresh.token).toBeGreaterThan(first.token);
    expect((await store.get('k'))?.fingerprint).toBe('fp-b');
  });

  it('never reuses a token for a key, even after delete and with the clock set back', async () => {
    const { clock, store } = setup();
    const first = await acquire(store);
    expect(await store.delete('k')).toBe(true);
    expect(await store.delete('k')).toBe(false);
    clock.set(clock.now() - 60_000);
    const second = await acquire(store);
    expect(second.token).toBe(first.token + 1);
  });

  it('issues tokens that grow across the whole store, so it keeps nothing per key once a record is gone', async () => {
    // One high-water mark for every key, not one per key: a long-lived store that sees
    // millions of keys and purges them holds no memory for the keys it forgot.
    const { clock, store } = setup();
    const a = await acquire(store, 'a');
    const b = await acquire(store, 'b');
    expect(a.token).toBe(clock.now() * 1000);
    expect(b.token).toBe(a.token + 1);
    await clock.advance(2 * TTL);
    expect(await store.purgeExpired()).toBe(2);
    clock.set(clock.now() - 3 * TTL);
    // Purged, and the clock set back before both: still a token never issued before.
    const again = await acquire(store, 'a');
    expect(again.token).toBe(b.token + 1);
  });

  it('hands out copies: mutating a returned record or steps changes nothing stored', async () => {
    const { store } = setup();
    const begun = await acquire(store);
    await store.saveStep('k', begun.token, 'a', '1');
    const record = await store.get('k');
    if (!record) throw new Error('no record');
    record.status = 'completed';
    record.steps.a = 'tampered';
    const existing = await store.begin('k', 'fp', LEASE, TTL);
    if (existing.kind !== 'existing') throw new Error('expected existing');
    existing.record.steps.b = 'x';
    expect(await store.get('k')).toMatchObject({ status: 'in_progress', steps: { a: '1' } });
  });

  it('lists by key with a status filter and a cursor', async () => {
    const { store } = setup();
    for (const key of ['e', 'a', 'd', 'c', 'b']) {
      const begun = await acquire(store, key);
      if (key !== 'c') await store.complete(key, begun.token, '1', TTL);
    }
    const page1 = await store.list({ limit: 2 });
    expect(page1.records.map((r) => r.key)).toEqual(['a', 'b']);
    expect(page1.cursor).toBeDefined();
    const page2 = await store.list({ limit: 2, ...(page1.cursor ? { cursor: page1.cursor } : {}) });
    expect(page2.records.map((r) => r.key)).toEqual(['c', 'd']);
    const page3 = await store.list({ limit: 2, ...(page2.cursor ? { cursor: page2.cursor } : {}) });
    expect(page3.records.map((r) => r.key)).toEqual(['e']);
    expect(page3.cursor).toBeUndefined();

    const completed = await store.list({ status: 'completed' });
    expect(completed.records.map((r) => r.key)).toEqual(['a', 'b', 'd', 'e']);
    const running = await store.list({ status: 'in_progress' });
    expect(running.records.map((r) => r.key)).toEqual(['c']);
  });

  it('purges only expired records, up to a limit', async () => {
    const { clock, store } = setup();
    for (const key of ['a', 'b', 'c']) {
      const begun = await acquire(store, key);
      await store.complete(key, begun.token, '1', key === 'c' ? TTL * 2 : TTL);
    }
    await clock.advance(TTL);
    expect(await store.purgeExpired({ limit: 1 })).toBe(1);
    expect(await store.purgeExpired()).toBe(1);
    expect(await store.purgeExpired()).toBe(0);
    expect((await store.list()).records.map((r) => r.key)).toEqual(['c']);
  });

  it('keeps an expired record readable by get until purged', async () => {
    const { clock, store } = setup();
    const begun = await acquire(store);
    await store.complete('k', begun.token, '1', TTL);
    await clock.advance(TTL + 1);
    expect((await store.get('k'))?.status).toBe('completed');
  });

  it('rejects bad arguments with InvalidArgumentError', async () => {
    const { store } = setup();
    await expect(store.begin('', 'fp', LEASE, TTL)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.begin('k', 'fp', 0, TTL)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.begin('k', 'fp', LEASE, Number.NaN)).rejects.toThrow(/ttlMs/);
    await expect(store.list({ limit: 0 })).rejects.toThrow(/limit/);
  });
});
