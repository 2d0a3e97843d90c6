import { describe, expect, it } from 'vitest';
import { BeginOrder, foundNew } from '../../src/stores/begin-order.js';

/** The order after each of `seen` (true: the key was new). */
function orders(order: BeginOrder, seen: boolean[]): boolean[] {
  return seen.map((isNew) => {
    order.saw(isNew);
    return order.insertFirst();
  });
}

describe('BeginOrder', () => {
  it('starts read-first and stays there while keys have records', () => {
    const order = new BeginOrder();
    expect(order.insertFirst()).toBe(false);
    expect(orders(order, Array(100).fill(false))).not.toContain(true);
  });

  it('turns insert-first after 11 new keys in a row, not 10', () => {
    const order = new BeginOrder();
    expect(orders(order, Array(11).fill(true))).toEqual([...Array(10).fill(false), true]);
  });

  it('turns back to read-first after 11 replays in a row once settled on new keys', () => {
    const order = new BeginOrder();
    orders(order, Array(200).fill(true));
    expect(order.insertFirst()).toBe(true);
    expect(orders(order, Array(11).fill(false))).toEqual([...Array(10).fill(true), false]);
  });

  it('at half new keys it follows the last key (the average sits either side of one half)', () => {
    // Alternating keys settle the share around one half: the order follows which side of it
    // the last key left the average on.
    const order = new BeginOrder();
    const seen = Array.from({ length: 400 }, (_, i) => i % 2 === 0);
    const result = orders(order, seen);
    // After a new key the share is just above one half, after a replay just below.
    expect(result.slice(-4)).toEqual([true, false, true, false]);
  });

  it('a rare new key among replays, or a rare replay among new keys, does not flip it', () => {
    const order = new BeginOrder();
    const mostlyReplays = Array.from({ length: 200 }, (_, i) => i % 5 === 0);
    expect(orders(order, mostlyReplays)).not.toContain(true);
    const mostlyNew = Array.from({ length: 200 }, (_, i) => i % 5 !== 0);
    expect(orders(order, mostlyNew).slice(20)).not.toContain(false);
  });

  it('keeps one average per object', () => {
    const a = new BeginOrder();
    const b = new BeginOrder();
    orders(a, Array(20).fill(true));
    expect(a.insertFirst()).toBe(true);
    expect(b.insertFirst()).toBe(false);
  });
});

describe('foundNew', () => {
  const acquired = { kind: 'acquired' as const, token: 1, leaseUntil: 1, steps: {} };
  it('is true only for a first attempt that took nothing over', () => {
    expect(foundNew({ ...acquired, attempts: 1, takeover: false })).toBe(true);
    expect(foundNew({ ...acquired, attempts: 2, takeover: true })).toBe(false);
    expect(foundNew({ ...acquired, attempts: 1, takeover: true })).toBe(false);
    expect(
      foundNew({
        kind: 'existing',
        record: {
          key: 'k',
          fingerprint: 'f',
          status: 'completed',
          token: 1,
          attempts: 1,
          leaseUntil: 0,
          expiresAt: 1,
          steps: {},
          createdAt: 0,
          updatedAt: 0,
        },
      }),
    ).toBe(false);
  });
});
