import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultCodec } from '../../src/idempotency/codec.js';
import { sameValue } from './same-value.js';

// Member names include the ones the format itself treats specially.
const memberName = fc.oneof(fc.string(), fc.constantFrom('$t', 'v', '__proto__', 'toJSON'));

const leaf = fc.oneof(
  fc.string(),
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
