/**
 * The header table of RabbitMQ copies: its size counted as amqplib 2.x encodes it (checked
 * against amqplib's own encoder, which the package does not export), and the fitting of a
 * copy's headers into the 64 KiB amqplib can publish.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HEADERS_DROPPED, fitHeaders } from '../../src/consumer/amqp/fit-headers.js';
import {
  MAX_HEADER_TABLE_BYTES,
  headerTableBytes,
} from '../../src/consumer/amqp/header-table-size.js';

const codec = createRequire(import.meta.url)(
  join(process.cwd(), 'node_modules/amqplib/lib/codec.js'),
) as { encodeTable(buffer: Buffer, table: object, offset: number): number };
const scratch = Buffer.alloc(4 << 20);

/** What amqplib writes for `table`, or Infinity when it refuses it. */
function encoded(table: Record<string, unknown>): number {
  try {
    return codec.encodeTable(scratch, table, 0);
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

const MESSAGE = 'x-reprocess-error-message';

/** A copy's table as the confirm publisher sends it: with its publish id (at its longest). */
const published = (headers: Record<string, unknown>) =>
  encoded({ ...headers, 'x-reprocess-publish-id': 'x'.repeat(32) });

const leaf = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.constantFrom(0, 127, -128, 128, -129, 32767, -32768, 32768, 2 ** 31, -(2 ** 31) - 1),
  fc.constantFrom(2 ** 50, 2 ** 53, 2 ** 63, -(2 ** 63), -(2 ** 64), 1e20, -1e20),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.5, -1.25),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 20 }).map((bytes) => Buffer.from(bytes)),
  fc.constantFrom(
    { '!': 'timestamp', value: 1_700_000_000 },
    { '!': 'decimal', value: { places: 2, digits: 12_345 } },
    { '!': 'decimal', value: { places: 300, digits: 1 } },
    { '!': 'decimal', value: {} },
    { '!': 'object', value: { a: 1 } },
  ),
);
const value = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    leaf,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 4 }),
  ),
})).value;
const table = fc.dictionary(fc.string({ maxLength: 12 }), value, { maxKeys: 8 });

describe('headerTableBytes', () => {
  it('is what amqplib writes, and Infinity for what it refuses; never less', () => {
    fc.assert(
      fc.property(table, (headers) => {
        const estimate = headerTableBytes(headers);
        const real = encoded(headers);
        // A typed value other than the timestamps and decimals amqplib decodes is taken as
        // too large (left out of a copy), whatever amqplib would make of it.
        if (JSON.stringify(headers).includes('"!":"object"')) {
          expect(estimate).toBeGreaterThanOrEqual(real);
        } else {
          expect(estimate).toBe(real);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('fitHeaders', () => {
  const hops = { 'x-reprocess-deliveries': '2', 'x-reprocess-published-at': '1700000000000' };

  it('keeps a table that fits as it is, numbers counted at their width (10,000 ids: 30 KB)', () => {
    const original = { ids: Array.from({ length: 10_000 }, (_, i) => i), 'idempotency-key': 'k' };
    expect(fitHeaders(original, hops)).toEqual({ ...original, ...hops });
  });

  it('always gives a table amqplib publishes, keeping every header it does not name as left out', () => {
    const shapes: Array<[string, Record<string, unknown>]> = [
      // 400 long names: naming each one left out must not overflow the table in turn.
      [
        '400 long names',
        Object.fromEntries(
          Array.from({ length: 400 }, (_, i) => [`${'n'.repeat(196)}${1000 + i}`, 'v']),
        ),
      ],
      // 14,000 small headers: the fit runs in one pass over them.
      [
        '14,000 headers',
        Object.fromEntries(Array.from({ length: 14_000 }, (_, i) => [`h${i}`, 1])),
      ],
      ['one too large', { big: 'y'.repeat(70_000), 'idempotency-key': 'k' }],
      ['a number amqplib refuses', { score: -1e20, 'idempotency-key': 'k' }],
      ['a typed value it refuses', { odd: { '!': 'object', value: {} }, 'idempotency-key': 'k' }],
    ];
    for (const [what, original] of shapes) {
      for (const ours of [hops, { [MESSAGE]: 'm'.repeat(2000), 'x-reprocess-reason': 'poison' }]) {
        const fitted = fitHeaders(original, ours, MESSAGE in ours ? MESSAGE : undefined);
        expect(published(fitted), what).toBeLessThanOrEqual(MAX_HEADER_TABLE_BYTES);
        const named = String(fitted[HEADERS_DROPPED] ?? '');
        for (const [name, kept] of Object.entries(original)) {
          if (name in fitted) expect(fitted[name], `${what}: ${name}`).toEqual(kept);
          else expect(named.includes(name) || /more$/.test(named), `${what}: ${name}`).toBe(true);
        }
        for (const name of Object.keys(ours)) expect(name in fitted, `${what}: ${name}`).toBe(true);
      }
    }
  });

  it('cuts the error message only as much as needed, after leaving out what cannot be encoded', () => {
    let deep: Record<string, unknown> = { leaf: 'x' };
    for (let i = 0; i < 600; i++) deep = { d: deep };
    const message = 'card declined: insufficient funds';
    const fitted = fitHeaders({ deep, 'idempotency-key': 'k' }, { [MESSAGE]: message }, MESSAGE);
    expect(fitted).toEqual({
      'idempotency-key': 'k',
      [MESSAGE]: message,
      [HEADERS_DROPPED]: 'deep',
    });

    // 64,400 bytes of the publisher's: the 2,000-character message is cut to the room left.
    const near = { big: 'y'.repeat(64_400) };
    const cut = fitHeaders(near, { [MESSAGE]: 'm'.repeat(2000) }, MESSAGE);
    expect(cut.big).toBe(near.big);
    const kept = String(cut[MESSAGE]);
    expect(kept).toMatch(/^m+…$/);
    expect(published(cut)).toBeLessThanOrEqual(MAX_HEADER_TABLE_BYTES);
    // One more character would not have fitted.
    const longer = { ...cut, [MESSAGE]: `m${kept}` };
    expect(published(longer)).toBeGreaterThan(MAX_HEADER_TABLE_BYTES);
  });
});
