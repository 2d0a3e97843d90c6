import { describe, expect, it } from 'vitest';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

/*
 * Memory store details the shared conformance suite does not pin down: step names that are
 * also Object.prototype members, copies of acquired steps, and tokens across purge.
 */

const LEASE = 30_000;
const TTL = 3_600_000;

function setup() {
  const clock = new FakeClock();
  return { clock, store: createMemoryStore({ clock }) };
}

async function acquire(store: IdempotencyStore, key = 'k') {
  const begun = await store.begin(key, 'fp', LEASE, TTL);
  if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  return begun;
}

describe('memory store (contract details)', () => {
  it.each(['__proto__', 'constructor', 'toString'])(
    'saves and hands back a step named %s as an own member',
    async (name) => {
      const { clock, store } = setup();
      const first = await acquire(store);
      expect(await store.saveStep('k', first.token, name, '"saved"')).toEqual({ kind: 'ok' });

      const record = await store.get('k');
      expect(Object.hasOwn(record?.steps ?? {}, name)).toBe(true);
      expect(record?.steps[name]).toBe('"saved"');
      expect(Object.getPrototypeOf(record?.steps)).toBe(Object.prototype);

      await clock.advance(LEASE);
      const next = await acquire(store);
      expect(Object.hasOwn(next.steps, name)).toBe(true);
      expect(next.steps[name]).toBe('"saved"');
    },
  );

  it('hands out a copy of the steps on a takeover', async () => {
    const { clock, store } = setup();
    const first = await acquire(store);
    await store.saveStep('k', first.token, 'a', '1');
    await clock.advance(LEASE);
    const next = await acquire(store);
    next.steps.a = 'tampered';
    next.steps.b = 'added';
    expect((await store.get('k'))?.steps).toEqual({ a: '1' });
  });

  it('never reuses a token after the record expired and was purged, clock set back', async () => {
    const { clock, store } = setup();
    const first = await acquire(store);
    await store.complete('k', first.token, '1', TTL);
    await clock.advance(TTL);
    expect(await store.purgeExpired()).toBe(1);
    clock.set(clock.now() - TTL - 60_000);
    const second = await acquire(store);
    expect(second.token).toBeGreaterThan(first.token);
    expect(second).toMatchObject({ attempts: 1, steps: {}, takeover: false });
  });
});
