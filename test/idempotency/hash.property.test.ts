import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveKey, hashKey } from '../../src/idempotency/hash.js';

// Strings rich in the characters a naive framing would use as separators or escapes.
const part = fc.string({
  unit: fc.constantFrom('a', 'b', '|', ':', '/', ',', '"', '\\', '[', ']', 'null', '\u0000', '😀'),
  maxLength: 6,
});

describe('hashKey framing (properties)', () => {
  it('moving text across the boundary between two parts gives another key', () => {
    fc.assert(
      fc.property(part, part, part, part, (a, moved, c, d) => {
        fc.pre(moved.length > 0);
        // operation | key
        expect(hashKey({ operation: a + moved, key: c })).not.toBe(
          hashKey({ operation: a, key: moved + c }),
        );
        // operation | principal
        expect(hashKey({ operation: a + moved, principal: c, key: d })).not.toBe(
          hashKey({ operation: a, principal: moved + c, key: d }),
        );
        // principal | key
        expect(hashKey({ operation: a, principal: c + moved, key: d })).not.toBe(
          hashKey({ operation: a, principal: c, key: moved + d }),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('different triples give different keys; the same triple the same key', () => {
    const triple = fc.record({
      operation: part,
      principal: fc.option(part, { nil: undefined }),
      key: part,
    });
    fc.assert(
      fc.property(triple, triple, (x, y) => {
        const same = x.operation === y.operation && x.principal === y.principal && x.key === y.key;
        expect(hashKey(x) === hashKey(y)).toBe(same);
      }),
      { numRuns: 500 },
    );
  });

  it('derived keys do not collide across (operation key, name) boundaries', () => {
    fc.assert(
      fc.property(part, part, part, (a, moved, c) => {
        fc.pre(moved.length > 0);
        expect(deriveKey(a + moved, c)).not.toBe(deriveKey(a, moved + c));
      }),
      { numRuns: 200 },
    );
  });
});
