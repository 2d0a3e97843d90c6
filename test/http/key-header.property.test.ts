import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIdempotencyKey, parseIdempotencyKeyHeader } from '../../src/http/key-header.js';

const key = (k: string) => ({ kind: 'key', key: k });

/** Printable ASCII, as a key may hold. */
const printable = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 255,
});

describe('parseIdempotencyKeyHeader properties', () => {
  it('every key of 1 to 255 printable characters survives the structured-field form', () => {
    fc.assert(
      fc.property(printable, (k) => {
        expect(parseIdempotencyKeyHeader(formatIdempotencyKey(k))).toEqual(key(k));
      }),
    );
  });

  it('a plain key without comma or quote reads as itself (surrounding blanks dropped)', () => {
    fc.assert(
      fc.property(
        printable.filter((k) => !/[,"]/.test(k) && k.trim().length > 0),
        (k) => {
          expect(parseIdempotencyKeyHeader(k)).toEqual(key(k.replace(/^[ \t]+|[ \t]+$/g, '')));
        },
      ),
    );
  });

  it('two values joined as HTTP joins repeated fields are never read as one key', () => {
    // Each value is one a client could send alone: a quoted key of any printable characters,
    // or a plain key without comma or quote. Each form is drawn independently for each value.
    const plainKey = printable.filter((k) => !/[,"]/.test(k) && k.trim().length > 0);
    const sent = fc.oneof(printable.map(formatIdempotencyKey), plainKey);
    fc.assert(
      fc.property(sent, sent, (a, b) => {
        expect(parseIdempotencyKeyHeader(a).kind).toBe('key');
        expect(parseIdempotencyKeyHeader(b).kind).toBe('key');
        expect(parseIdempotencyKeyHeader(`${a}, ${b}`).kind).toBe('invalid');
        expect(parseIdempotencyKeyHeader(`${a},${b}`).kind).toBe('invalid');
      }),
    );
  });

  it('two values whose quotes pair up across the comma are one quoted key, as the draft reads them', () => {
    // The counterexample that once failed the test above: the values `" ` and `"` are each
    // invalid alone, and joined they are the structured-field string `" , "`. The parser
    // cannot tell that from one key, and need not: neither value was a key on its own.
    expect(parseIdempotencyKeyHeader('" ').kind).toBe('invalid');
    expect(parseIdempotencyKeyHeader('"').kind).toBe('invalid');
    expect(parseIdempotencyKeyHeader('" , "')).toEqual(key(' , '));
  });

  it('never throws, whatever the value', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (value) => {
        const parsed = parseIdempotencyKeyHeader(value);
        if (parsed.kind === 'key') {
          expect(parsed.key.length).toBeGreaterThan(0);
          expect(parsed.key.length).toBeLessThanOrEqual(255);
          expect(/^[\x20-\x7e]+$/.test(parsed.key)).toBe(true);
        }
      }),
    );
  });
});
