import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/idempotency/canonical-json.js';
import { fingerprintOf } from '../../src/idempotency/hash.js';

/** Rebuilds every object with its keys inserted in the order `order` gives. */
function reorder(value: unknown, order: (keys: string[]) => string[]): unknown {
  if (Array.isArray(value)) return value.map((v) => reorder(v, order));
  if (value === null || typeof value !== 'object') return value;
  const source = value as Record<string, unknown>;
  return Object.fromEntries(order(Object.keys(source)).map((k) => [k, reorder(source[k], order)]));
}

function shuffler(seed: number): (keys: string[]) => string[] {
  let state = seed >>> 0 || 1;
  return (keys) => {
    const out = [...keys];
    for (let i = out.length - 1; i > 0; i--) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const j = state % (i + 1);
      [out[i], out[j]] = [out[j] as string, out[i] as string];
    }
    return out;
  };
}

/**
 * JSON values, at a size where objects may have more than 16 members (where the writer sorts
 * with Array#sort instead of by insertion) and nest a few levels.
 */
const json = fc.oneof(
  fc.jsonValue(),
  fc.jsonValue({ depthSize: 'medium' }),
  fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { minKeys: 17, maxKeys: 60 }),
);

describe('canonicalJson (properties)', () => {
  it('does not depend on key insertion order', () => {
    fc.assert(
      fc.property(json, fc.integer(), (value, seed) => {
        const shuffled = reorder(value, shuffler(seed));
        const reversed = reorder(value, (keys) => [...keys].reverse());
        expect(canonicalJson(shuffled)).toBe(canonicalJson(value));
        expect(canonicalJson(reversed)).toBe(canonicalJson(value));
        expect(fingerprintOf(shuffled)).toBe(fingerprintOf(value));
      }),
      { numRuns: 300 },
    );
  });

  it('is JSON that parses back to the same data', () => {
    fc.assert(
      fc.property(json, (value) => {
        // JSON itself cannot tell -0 from 0; compare through a JSON round trip.
        expect(JSON.parse(canonicalJson(value))).toEqual(JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });

  it('writes every object with its keys sorted', () => {
    fc.assert(
      fc.property(json, (value) => {
        const check = (v: unknown): void => {
          if (Array.isArray(v)) {
            for (const item of v) check(item);
            return;
          }
          if (v === null || typeof v !== 'object') return;
          const keys = Object.keys(v);
          expect(keys).toEqual([...keys].sort());
          for (const k of keys) check((v as Record<string, unknown>)[k]);
        };
        // JSON.parse keeps the text's member order (integer-like keys aside, which JS
        // always lists first in ascending order), so check the other keys' order.
        const parsed = JSON.parse(canonicalJson(value), (_k, v: unknown) => {
          if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
          return Object.fromEntries(Object.entries(v).filter(([k]) => !/^(0|[1-9]\d*)$/.test(k)));
        });
        check(parsed);
      }),
      { numRuns: 200 },
    );
  });
});
