import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { MAX_DEPTH, canonicalJson } from '../../src/idempotency/canonical-json.js';

describe('canonicalJson', () => {
  it('sorts keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,1]},"b":1}',
    );
  });

  it('sorts keys by UTF-16 code units', () => {
    expect(canonicalJson({ b: 1, B: 2, é: 3, a: 4, '10': 5, '9': 6 })).toBe(
      '{"10":5,"9":6,"B":2,"a":4,"b":1,"é":3}',
    );
  });

  it('follows JSON for undefined, functions, symbols and non-finite numbers', () => {
    expect(canonicalJson({ u: undefined, f: () => 1, s: Symbol('x'), n: 1 })).toBe('{"n":1}');
    expect(canonicalJson([undefined, () => 1, Number.NaN, Number.POSITIVE_INFINITY])).toBe(
      '[null,null,null,null]',
    );
    expect(canonicalJson(-0)).toBe('0');
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('honours toJSON (a Date is its ISO string)', () => {
    expect(canonicalJson({ at: new Date(0) })).toBe('{"at":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson({ x: { toJSON: () => ({ z: 1, y: 2 }) } })).toBe('{"x":{"y":2,"z":1}}');
  });

  it('follows JSON for a toJSON that returns its own object, for the key toJSON gets, and for boxed strings', () => {
    const self = {
      a: 1,
      toJSON() {
        return this;
      },
    };
    expect(canonicalJson({ self })).toBe(JSON.stringify({ self }));
    const keyed = { toJSON: (key: string) => `key=${key}` };
    const input = { d: keyed, list: [keyed] };
    expect(canonicalJson(input)).toBe(JSON.stringify({ d: keyed, list: [keyed] }));
    expect(canonicalJson(keyed)).toBe(JSON.stringify(keyed));
    for (const boxed of [new String('ab'), new String('')]) {
      expect(canonicalJson({ s: boxed })).toBe(JSON.stringify({ s: boxed }));
    }
    // Entries of a Map or Set are sorted: their toJSON gets '', never their position.
    class Tag {
      constructor(readonly v: number) {}
      toJSON(k: string) {
        return `${k}:${this.v}`;
      }
    }
    expect(
      canonicalJson(
        new Map([
          ['x', new Tag(1)],
          ['y', new Tag(2)],
        ]),
      ),
    ).toBe(
      canonicalJson(
        new Map([
          ['y', new Tag(2)],
          ['x', new Tag(1)],
        ]),
      ),
    );
    expect(canonicalJson(new Set([new Tag(1), new Tag(2)]))).toBe(
      canonicalJson(new Set([new Tag(2), new Tag(1)])),
    );
    // A boxed string is its value, not the object of its characters.
    expect(canonicalJson(new String('ab'))).not.toBe(canonicalJson({ 0: 'a', 1: 'b' }));
  });

  it('refuses a value nested deeper than MAX_DEPTH by name, where JSON.parse accepts it (no RangeError)', () => {
    const nested = (depth: number) => JSON.parse(`${'['.repeat(depth)}1${']'.repeat(depth)}`);
    expect(canonicalJson(nested(MAX_DEPTH))).toBe(JSON.stringify(nested(MAX_DEPTH)));
    for (const depth of [MAX_DEPTH + 1, 5000, 50_000]) {
      expect(() => canonicalJson(nested(depth))).toThrow(
        expect.objectContaining({
          code: 'INVALID_ARGUMENT',
          message: expect.stringContaining(`nested deeper than ${MAX_DEPTH} levels`),
        }),
      );
    }
  });

  it('keeps what a fingerprint must see: bigint, Map, Set and bytes', () => {
    expect(canonicalJson({ n: 12345678901234567890n })).toBe('{"n":12345678901234567890}');
    expect(
      canonicalJson(
        new Map([
          ['b', 1],
          ['a', 2],
        ]),
      ),
    ).toBe(
      canonicalJson(
        new Map([
          ['a', 2],
          ['b', 1],
        ]),
      ),
    );
    expect(canonicalJson(new Map([['a', 1]]))).not.toBe(canonicalJson(new Map([['a', 2]])));
    expect(canonicalJson(new Set([2, 1]))).toBe('[1,2]');
    expect(canonicalJson(Buffer.from('hi'))).toBe(canonicalJson(new Uint8Array([104, 105])));
    expect(canonicalJson(Buffer.from('hi'))).toBe('{"$bytes":"aGk="}');
  });

  it('escapes strings as JSON does', () => {
    expect(canonicalJson({ 'k"ey': 'line\nbreak' })).toBe('{"k\\"ey":"line\\nbreak"}');
  });

  it('throws InvalidArgumentError on a cycle, naming the path', () => {
    const root: { child: { back?: unknown } } = { child: {} };
    root.child.back = root;
    expect(() => canonicalJson(root)).toThrow(InvalidArgumentError);
    expect(() => canonicalJson(root)).toThrow(/circular structure \(at \$\.child\.back\)/);
    const list: unknown[] = [];
    list.push(list);
    expect(() => canonicalJson(list)).toThrow(/\$\[0\]/);
  });

  it('names the whole path of a deep cycle, through arrays, maps and sets', () => {
    const root: Record<string, unknown> = {};
    root.a = [0, { m: new Map<unknown, unknown>([['k', new Set([1, root])]]) }];
    expect(() => canonicalJson(root)).toThrow(
      'cannot fingerprint a circular structure (at $.a[1].m.<map entry 0>.<set item 1>)',
    );
    // The walk keeps going after a member that was fine: the path is of the cycle only.
    const other: Record<string, unknown> = { x: { y: 1 }, z: [{}, {}] };
    ((other.z as unknown[])[1] as Record<string, unknown>).w = other;
    expect(() => canonicalJson(other)).toThrow('(at $.z[1].w)');
  });

  it('refuses an instance whose data JSON cannot see, naming what and where', () => {
    class Card {
      #number: string;
      constructor(number: string) {
        this.#number = number;
      }
      get last4(): string {
        return this.#number.slice(-4);
      }
    }
    const opaque: Array<[unknown, RegExp]> = [
      [
        new Request('https://api.example/pay', { method: 'POST', body: '{"amount":1}' }),
        /a Request \(at \$\)/,
      ],
      [{ query: new URLSearchParams('amount=1') }, /a URLSearchParams \(at \$\.query\)/],
      [[new Card('4242424242424242')], /a Card \(at \$\[0\]\)/],
      [{ pattern: /x/ }, /a RegExp/],
      // Keyless whatever bytes it views: every DataView would be {}.
      [{ body: new DataView(new Uint8Array([1, 2]).buffer) }, /a DataView/],
    ];
    for (const [value, message] of opaque) {
      expect(() => canonicalJson(value)).toThrow(InvalidArgumentError);
      expect(() => canonicalJson(value)).toThrow(message);
      expect(() => canonicalJson(value)).toThrow(/fingerprint selector/);
    }
    // What JSON sees is still written: a plain {}, a null-prototype object, a class with
    // public fields, and one with toJSON (a URL).
    class Order {
      constructor(readonly id: string) {}
    }
    expect(canonicalJson({})).toBe('{}');
    expect(canonicalJson(Object.create(null))).toBe('{}');
    expect(canonicalJson(new Order('o-1'))).toBe('{"id":"o-1"}');
    expect(canonicalJson(new URL('https://a.example/x'))).toBe('"https://a.example/x"');
    // An empty plain object of another realm, an empty typed array (as before: {}), and boxed
    // numbers and booleans (their values, as in JSON) are not refused either.
    expect(canonicalJson({ body: runInNewContext('({})') })).toBe('{"body":{}}');
    expect(canonicalJson({ samples: new Float32Array(0) })).toBe('{"samples":{}}');
    expect(canonicalJson([new Number(5), new Boolean(false)])).toBe('[5,false]');
  });

  it('accepts the same object twice without a cycle', () => {
    const shared = { v: 1 };
    expect(canonicalJson({ a: shared, b: [shared] })).toBe('{"a":{"v":1},"b":[{"v":1}]}');
  });
});
