import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyInvalidError,
  IdempotencyKeyMissingError,
  InvalidArgumentError,
} from '../../src/errors.js';
import { keyReader, parsePath, readPath, validateKey } from '../../src/idempotency/key.js';

describe('validateKey', () => {
  it('accepts 1 to 255 characters', () => {
    expect(validateKey('a')).toBe('a');
    expect(validateKey('x'.repeat(255))).toBe('x'.repeat(255));
    expect(validateKey('order 42 / ünïcode ✓')).toBe('order 42 / ünïcode ✓');
  });

  it('counts characters, not UTF-16 units', () => {
    const emoji = '😀'.repeat(255);
    expect(emoji.length).toBe(510);
    expect(validateKey(emoji)).toBe(emoji);
    expect(() => validateKey('😀'.repeat(256))).toThrow(/at most 255 characters, got 256/);
  });

  it('missing: undefined or null', () => {
    expect(() => validateKey(undefined)).toThrow(IdempotencyKeyMissingError);
    expect(() => validateKey(null)).toThrow(IdempotencyKeyMissingError);
  });

  it.each([
    ['', /must not be empty/],
    ['x'.repeat(256), /at most 255 characters, got 256/],
    [42, /must be a string, got number/],
    [['k'], /must be a string, got an array/],
    [{}, /must be a string, got object/],
    ['tab\there', /control characters \(found U\+0009 at index 3\)/],
    ['\u0000', /U\+0000/],
    ['del\u007f', /U\+007f/],
    ['c1\u0085', /U\+0085/],
  ])('invalid: %j', (key, message) => {
    expect(() => validateKey(key)).toThrow(IdempotencyKeyInvalidError);
    expect(() => validateKey(key)).toThrow(message);
  });

  it('names the key in messages', () => {
    expect(() => validateKey('', 'Idempotency-Key header')).toThrow(/^Idempotency-Key header/);
  });
});

describe('key sources', () => {
  it('parses field paths', () => {
    expect(parsePath('body.id', 'key')).toEqual(['body', 'id']);
    expect(() => parsePath('', 'key')).toThrow(InvalidArgumentError);
    expect(() => parsePath('a.', 'key')).toThrow(InvalidArgumentError);
  });

  it('reads nested values, getters, and never the prototype chain escape hatches', () => {
    expect(readPath({ body: { id: 'x' } }, ['body', 'id'])).toBe('x');
    expect(readPath({ body: null }, ['body', 'id'])).toBeUndefined();
    expect(readPath('text', ['length'])).toBeUndefined();
    class Req {
      get headers() {
        return { key: 'from-getter' };
      }
    }
    expect(readPath(new Req(), ['headers', 'key'])).toBe('from-getter');
    expect(readPath({}, ['__proto__'])).toBeUndefined();
    expect(readPath({}, ['constructor', 'name'])).toBeUndefined();
  });

  it('keyReader takes a path or a function', () => {
    expect(keyReader<{ id: string }>('id')({ id: 'a' })).toBe('a');
    expect(keyReader((i: { n: number }) => `n${i.n}`)({ n: 1 })).toBe('n1');
    expect(() => keyReader(3 as unknown as string)).toThrow(InvalidArgumentError);
  });
});
