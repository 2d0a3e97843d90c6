import { describe, expect, it } from 'vitest';
import { parseIdempotencyKeyHeader } from '../../src/http/key-header.js';

const key = (k: string) => ({ kind: 'key', key: k });

describe('parseIdempotencyKeyHeader', () => {
  it('reads the plain form and the structured-field string form', () => {
    expect(parseIdempotencyKeyHeader('8e03978e-40d5-43e8-bc93-6894a57f9324')).toEqual(
      key('8e03978e-40d5-43e8-bc93-6894a57f9324'),
    );
    expect(parseIdempotencyKeyHeader('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toEqual(
      key('8e03978e-40d5-43e8-bc93-6894a57f9324'),
    );
    expect(parseIdempotencyKeyHeader('  "a b"\t')).toEqual(key('a b'));
    expect(parseIdempotencyKeyHeader('"say \\"hi\\" \\\\ bye"')).toEqual(key('say "hi" \\ bye'));
    expect(parseIdempotencyKeyHeader('"a,b"')).toEqual(key('a,b'));
    // Parameters of the item are allowed and ignored.
    expect(parseIdempotencyKeyHeader('"abc";v=1')).toEqual(key('abc'));
  });

  it('tells absent from empty', () => {
    expect(parseIdempotencyKeyHeader(null)).toEqual({ kind: 'absent' });
    expect(parseIdempotencyKeyHeader(undefined)).toEqual({ kind: 'absent' });
    expect(parseIdempotencyKeyHeader([])).toEqual({ kind: 'absent' });
    expect(parseIdempotencyKeyHeader('')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/empty/),
    });
    expect(parseIdempotencyKeyHeader('   ')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/empty/),
    });
    expect(parseIdempotencyKeyHeader('""')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/empty/),
    });
  });

  it('refuses several values: repeated fields, a comma list, two quoted strings', () => {
    for (const value of [['a', 'b'], 'a, b', 'a,b', '"a", "b"', '"a";p=1, "b"']) {
      expect(parseIdempotencyKeyHeader(value)).toMatchObject({
        kind: 'invalid',
        reason: expect.stringMatching(/several/),
      });
    }
    expect(parseIdempotencyKeyHeader(['only'])).toEqual(key('only'));
  });

  it('refuses keys of 256 characters or more, accepts 255', () => {
    expect(parseIdempotencyKeyHeader('k'.repeat(255))).toEqual(key('k'.repeat(255)));
    expect(parseIdempotencyKeyHeader('k'.repeat(256))).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/256 characters long; at most 255/),
    });
    expect(parseIdempotencyKeyHeader(`"${'k'.repeat(256)}"`)).toMatchObject({ kind: 'invalid' });
  });

  it('refuses control characters, DEL and non-ASCII, naming the character', () => {
    expect(parseIdempotencyKeyHeader('a\u0001b')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/control character \(U\+0001 at index 1\)/),
    });
    expect(parseIdempotencyKeyHeader('a\tb')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/U\+0009/),
    });
    expect(parseIdempotencyKeyHeader('"a\u007fb"')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/U\+007F/),
    });
    expect(parseIdempotencyKeyHeader('café')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/non-ASCII/),
    });
  });

  it('refuses broken quoting', () => {
    expect(parseIdempotencyKeyHeader('"abc')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/closing quote/),
    });
    expect(parseIdempotencyKeyHeader('"a\\nb"')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/escape/),
    });
    expect(parseIdempotencyKeyHeader('"abc"def')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/after the quoted/),
    });
    expect(parseIdempotencyKeyHeader('ab"c')).toMatchObject({
      kind: 'invalid',
      reason: expect.stringMatching(/stray quote/),
    });
  });
});
