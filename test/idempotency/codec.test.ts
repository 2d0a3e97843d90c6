import { describe, expect, it } from 'vitest';
import { ErrorCode, RecordCorruptError, ResultNotStorableError } from '../../src/errors.js';
import { createDefaultCodec, defaultCodec } from '../../src/idempotency/codec.js';
import { sameValue } from './same-value.js';

/** [1, undefined, <hole>, 3] */
function withHole(): unknown[] {
  const list: unknown[] = [1, undefined];
  list[3] = 3;
  return list;
}

const roundTrip = (value: unknown) => defaultCodec.decode(defaultCodec.encode(value));

describe('default codec', () => {
  it.each([
    ['null', null],
    ['a string', 'héllo "quoted" \u2028'],
    ['a number', 3.25],
    ['-0', -0],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['a bigint', -12345678901234567890n],
    ['undefined', undefined],
    ['a date', new Date('2024-02-29T12:00:00.123Z')],
    ['an invalid date', new Date(Number.NaN)],
    ['a Buffer', Buffer.from([0, 1, 254, 255])],
    ['a Uint8Array', new Uint8Array([9, 8, 7])],
    [
      'a Map with non-string keys',
      new Map<unknown, unknown>([
        [1, 'a'],
        [{ k: 1 }, new Set([2])],
      ]),
    ],
    ['a Set', new Set(['a', 1, null])],
    ['an object with undefined members', { a: undefined, b: 1 }],
    ['an array with undefined and holes', withHole()],
    ['an object with a $t member', { $t: 'date', v: 5 }],
    ['a string that looks like a tag', '{"$t":"undef"}'],
    ['nested', { list: [{ when: new Date(1), n: -0 }], meta: new Map([['x', [1n]]]) }],
  ])('round-trips %s faithfully', (_, value) => {
    expect(sameValue(roundTrip(value), value)).toBe(true);
  });

  it('keeps a Buffer a Buffer and a Uint8Array a Uint8Array', () => {
    expect(Buffer.isBuffer(roundTrip(Buffer.from('x')))).toBe(true);
    const bytes = roundTrip(new Uint8Array([1]));
    expect(Buffer.isBuffer(bytes)).toBe(false);
    expect(bytes).toBeInstanceOf(Uint8Array);
  });

  it('encodes a subarray as only its own bytes', () => {
    const whole = new Uint8Array([1, 2, 3, 4]);
    expect(sameValue(roundTrip(whole.subarray(1, 3)), new Uint8Array([2, 3]))).toBe(true);
  });

  it('stores a __proto__ member as data, never as a prototype', () => {
    const value = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<
      string,
      unknown
    >;
    const back = roundTrip(value) as Record<string, unknown>;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.hasOwn(back, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(sameValue(back, value)).toBe(true);
  });

  it('decodes a null-prototype object as a plain object', () => {
    const bare = Object.assign(Object.create(null) as object, { a: 1 });
    expect(roundTrip(bare)).toEqual({ a: 1 });
  });

  it('writes plain JSON for plain data', () => {
    expect(defaultCodec.encode({ b: [1, 'x'], a: null })).toBe('{"b":[1,"x"],"a":null}');
  });

  it('duplicates a shared (non-circular) reference', () => {
    const shared = { n: 1 };
    const back = roundTrip({ a: shared, b: shared }) as { a: object; b: object };
    expect(back.a).toEqual(back.b);
    expect(back.a).not.toBe(back.b);
  });

  class Money {
    constructor(readonly cents: number) {}
  }
  const circular: Record<string, unknown> = { a: { b: [] as unknown[] } };
  ((circular.a as { b: unknown[] }).b as unknown[]).push(circular);

  it.each([
    ['a function', { cb: function notify() {} }, /a function \(notify\) \(at \$\.cb\)/],
    ['a symbol', [Symbol('s')], /a symbol \(at \$\[0\]\)/],
    ['a class instance', { total: new Money(5) }, /an instance of Money \(at \$\.total\)/],
    ['an error', new TypeError('x'), /an error \(TypeError\)/],
    ['a RegExp', /x/, /an instance of RegExp/],
    ['another typed array', new Float64Array(2), /an instance of Float64Array/],
    ['a symbol-keyed member', { [Symbol('k')]: 1 }, /symbol-keyed member/],
    ['a circular structure', circular, /a circular structure \(at \$\.a\.b\[0\]\)/],
    ['a function inside a Map', new Map([['k', () => 1]]), /a function \(at \$\.<map entry 0>\)/],
  ])('refuses %s with RESULT_NOT_STORABLE naming the path', (_, value, message) => {
    let caught: unknown;
    try {
      defaultCodec.encode(value);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ResultNotStorableError);
    expect(caught).toMatchObject({ code: ErrorCode.RESULT_NOT_STORABLE });
    expect((caught as Error).message).toMatch(message);
  });

  it.each([
    ['not JSON', '{oops'],
    ['an unknown tag', '{"$t":"mystery"}'],
    ['a bad special number', '{"$t":"num","v":"1"}'],
    ['a bad bigint', '{"$t":"bigint","v":"1.5"}'],
    ['a bad date', '{"$t":"date","v":"yesterday"}'],
    ['a date out of range', '{"$t":"date","v":1e300}'],
    ['a fractional date', '{"$t":"date","v":1.5}'],
    ['bytes that are not base64', '{"$t":"bytes","v":"not base64!"}'],
    ['a buffer that is not base64', '{"$t":"buffer","v":"%%%%"}'],
    ['base64 without its padding', '{"$t":"bytes","v":"AQ"}'],
    ['a bad map', '{"$t":"map","v":[[1]]}'],
    ['a bad escaped object', '{"$t":"obj","v":[]}'],
  ])('decode refuses %s with RecordCorruptError', (_, text) => {
    expect(() => defaultCodec.decode(text)).toThrow(RecordCorruptError);
  });

  it('createDefaultCodec gives an independent codec with the same format', () => {
    const codec = createDefaultCodec();
    expect(codec).not.toBe(defaultCodec);
    expect(codec.encode(new Set([1]))).toBe(defaultCodec.encode(new Set([1])));
  });
});
