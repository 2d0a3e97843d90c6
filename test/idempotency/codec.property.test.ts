import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultCodec } from '../../src/idempotency/codec.js';
import { quoteJson } from '../../src/idempotency/json-text.js';
import { referenceEncode } from './codec-reference.js';
import { sameValue } from './same-value.js';

// Any UTF-16 text, lone surrogates, control characters, quotes and backslashes included.
const anyText = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({
    unit: fc.constantFrom(
      '"',
      '\\',
      '\n',
      '\u0000',
      '\u001f',
      '\u007f',
      '\ud800',
      '\udc00',
      '\u2028',
      'a',
      'é',
      '😀',
    ),
  }),
);

// Member names include the ones the format itself treats specially, and integer-like ones
// (an object lists those first, in numeric order).
const memberName = fc.oneof(
  anyText,
  fc.constantFrom('$t', 'v', '__proto__', 'toJSON', '0', '1', '10', '-1', '01', '4294967295'),
);

const leaf = fc.oneof(
  anyText,
  fc.constantFrom(
    0,
    -0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    1e21,
    5e-7,
    -1.5e-300,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
  ),
  fc.constant(new Date(Number.NaN)),
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt(),
  fc.date({ noInvalidDate: false }),
  fc.uint8Array({ maxLength: 16 }),
  fc.uint8Array({ maxLength: 16 }).map((bytes) => Buffer.from(bytes)),
);

const { value: storable } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('value'), { maxLength: 5 }),
    // Null-prototype objects come back with Object.prototype (documented; tested in codec.test.ts).
    fc.dictionary(memberName, tie('value'), { maxKeys: 5, noNullPrototype: true }),
    fc
      .array(fc.tuple(tie('value'), tie('value')), { maxLength: 4 })
      .map((entries) => new Map(entries)),
    fc.array(tie('value'), { maxLength: 4 }).map((items) => new Set(items)),
  ),
}));

describe('default codec (properties)', () => {
  it('decode(encode(v)) is v for every storable value', () => {
    fc.assert(
      fc.property(storable, (value) => {
        const text = defaultCodec.encode(value);
        expect(typeof text).toBe('string');
        expect(() => JSON.parse(text)).not.toThrow();
        expect(sameValue(defaultCodec.decode(text), value)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('writes exactly the text of the former tree encoder (stored results stay identical)', () => {
    fc.assert(
      fc.property(storable, (value) => {
        expect(defaultCodec.encode(value)).toBe(referenceEncode(value));
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses what the former tree encoder refused, with the same message', () => {
    const refused = fc.constantFrom<unknown>(
      () => 1,
      function named() {},
      Symbol('s'),
      new Error('e'),
      /re/,
      new Uint16Array(2),
      { [Symbol('k')]: 1 },
      new (class Point {})(),
      Promise.resolve(),
    );
    const { nested } = fc.letrec<{ nested: unknown }>((tie) => ({
      nested: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        refused,
        storable,
        fc.array(tie('nested'), { maxLength: 4 }),
        fc.dictionary(memberName, tie('nested'), { maxKeys: 4, noNullPrototype: true }),
        fc
          .array(fc.tuple(tie('nested'), tie('nested')), { maxLength: 3 })
          .map((entries) => new Map(entries)),
        fc.array(tie('nested'), { maxLength: 3 }).map((items) => new Set(items)),
      ),
    }));
    const outcome = (encode: (v: unknown) => string, value: unknown) => {
      try {
        return { text: encode(value) };
      } catch (error) {
        return { name: (error as Error).name, message: (error as Error).message };
      }
    };
    fc.assert(
      fc.property(nested, (value) => {
        expect(outcome((v) => defaultCodec.encode(v), value)).toEqual(
          outcome(referenceEncode, value),
        );
      }),
      { numRuns: 2000 },
    );
    // A cycle, at some depth.
    const cyclic: Record<string, unknown> = { a: [1, { b: new Map() }] };
    ((cyclic.a as unknown[])[1] as { b: Map<unknown, unknown> }).b.set('back', cyclic);
    expect(outcome((v) => defaultCodec.encode(v), cyclic)).toEqual(
      outcome(referenceEncode, cyclic),
    );
  });

  it('quotes any string exactly as JSON.stringify does', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        expect(quoteJson(text)).toBe(JSON.stringify(text));
      }),
      { numRuns: 3000 },
    );
    for (let code = 0; code < 0x10000; code++) {
      const text = `a${String.fromCharCode(code)}b`;
      if (quoteJson(text) !== JSON.stringify(text)) {
        expect(quoteJson(text)).toBe(JSON.stringify(text));
      }
    }
  });

  it('encoding is deterministic', () => {
    fc.assert(
      fc.property(storable, (value) => {
        expect(defaultCodec.encode(value)).toBe(defaultCodec.encode(value));
      }),
      { numRuns: 200 },
    );
  });

  it('tag-shaped JSON the codec did not write either decodes or throws RecordCorruptError', () => {
    // fc.json() almost never produces "$t" members: build trees full of them, with payloads
    // of every shape, so each tag's payload check is reached with wrong input.
    const tag = fc.constantFrom(
      'undef',
      'num',
      'bigint',
      'date',
      'buffer',
      'bytes',
      'map',
      'set',
      'obj',
      'other',
    );
    const { node } = fc.letrec<{ node: unknown }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        fc.jsonValue({ maxDepth: 1 }),
        fc.constantFrom('NaN', '-0', 'Infinity', '12', '-3', 'AQ==', 'AQ', '!!'),
        fc.record({ $t: tag, v: tie('node') }),
        fc.record({ $t: tag }),
        fc.array(tie('node'), { maxLength: 3 }),
        fc.dictionary(fc.constantFrom('$t', 'v', 'a', '__proto__'), tie('node'), { maxKeys: 3 }),
      ),
    }));
    fc.assert(
      fc.property(node, (tree) => {
        try {
          defaultCodec.decode(JSON.stringify(tree) ?? 'null');
        } catch (error) {
          expect((error as { code?: string }).code).toBe('RECORD_CORRUPT');
        }
      }),
      { numRuns: 500 },
    );
  });

  it('any JSON text the codec did not write either decodes or throws RecordCorruptError', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        try {
          defaultCodec.decode(text);
        } catch (error) {
          expect((error as { code?: string }).code).toBe('RECORD_CORRUPT');
        }
      }),
      { numRuns: 300 },
    );
  });
});
