import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { deriveKey, fingerprintOf, hashKey, sha256Hex } from '../../src/idempotency/hash.js';

describe('hashing', () => {
  it('hashKey is a fixed-length hex SHA-256 that does not contain the key', () => {
    const hashed = hashKey({ operation: 'charge', key: 'alice@example.com' });
    expect(hashed).toMatch(/^[0-9a-f]{64}$/);
    expect(hashed).not.toContain('alice');
  });

  it('keeps the stored-key format stable (records written by earlier versions stay reachable)', () => {
    // Vectors computed independently (node -e with crypto over the documented framing).
    expect(hashKey({ operation: 'charge', key: 'order-42' })).toBe(
      'bf015b6f610abbb2f90fdd44ca852f89e41bcfecf6aec3cfa139cf5364e05b8f',
    );
    expect(fingerprintOf({ b: 1, a: [1, 'x'] })).toBe(
      'a88dede55f330dbae7d6c99cb78c43213f114625ed11c8fd0b769d117c06bb50',
    );
  });

  it('frames the parts unambiguously', () => {
    expect(hashKey({ operation: 'a|b', key: 'c' })).not.toBe(
      hashKey({ operation: 'a', key: 'b|c' }),
    );
    expect(hashKey({ operation: 'a', principal: 'b', key: 'c' })).not.toBe(
      hashKey({ operation: 'a', key: 'b\u0000c' }),
    );
    expect(hashKey({ operation: 'a","b', key: 'c' })).not.toBe(
      hashKey({ operation: 'a', principal: 'b', key: 'c' }),
    );
    expect(hashKey({ operation: 'op', key: 'k' })).not.toBe(
      hashKey({ operation: 'op', principal: '', key: 'k' }),
    );
    expect(hashKey({ operation: 'op', principal: 'p', key: 'k' })).not.toBe(
      hashKey({ operation: 'op', principal: 'k', key: 'p' }),
    );
  });

  it('fingerprints ignore key order but not values', () => {
    expect(fingerprintOf({ a: 1, b: { c: 2, d: 3 } })).toBe(
      fingerprintOf({ b: { d: 3, c: 2 }, a: 1 }),
    );
    expect(fingerprintOf({ a: 1 })).not.toBe(fingerprintOf({ a: 2 }));
    expect(fingerprintOf([1, 2])).not.toBe(fingerprintOf([2, 1]));
    expect(fingerprintOf('1')).not.toBe(fingerprintOf(1));
  });

  it('refuses to fingerprint a circular input', () => {
    const loop: { self?: unknown } = {};
    loop.self = loop;
    expect(() => fingerprintOf(loop)).toThrow(InvalidArgumentError);
  });

  it('deriveKey is stable, distinct per name and per operation', () => {
    const op1 = sha256Hex('op1');
    const op2 = sha256Hex('op2');
    expect(deriveKey(op1, 'psp')).toBe(deriveKey(op1, 'psp'));
    expect(deriveKey(op1, 'psp')).not.toBe(deriveKey(op1, 'email'));
    expect(deriveKey(op1, 'psp')).not.toBe(deriveKey(op2, 'psp'));
    expect(deriveKey(op1, 'psp')).toMatch(/^[0-9a-f]{64}$/);
  });
});
