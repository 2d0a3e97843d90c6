import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { headOf } from '../src/clip-text.js';
import { encodeHistory } from '../src/consumer/amqp/history-headers.js';
import { describeFailure } from '../src/idempotency/failure.js';

const isWellFormed = (text: string) =>
  (text as string & { isWellFormed(): boolean }).isWellFormed();

describe('headOf', () => {
  it('never cuts a surrogate pair in two, and keeps as much as it can', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.nat(80), (text, max) => {
        const head = headOf(text, max);
        expect(isWellFormed(head)).toBe(true);
        expect(text.startsWith(head)).toBe(true);
        expect(head.length).toBeLessThanOrEqual(max);
        expect(head.length).toBeGreaterThanOrEqual(Math.min(text.length, max) - 1);
      }),
    );
    expect(headOf('ab😀', 3)).toBe('ab');
    expect(headOf('ab😀', 4)).toBe('ab😀');
  });

  it('keeps the texts that are cut for headers and records well-formed (an emoji at the cut)', () => {
    const message = `${'a'.repeat(1999)}😀 tail`;
    const headers = encodeHistory(
      {
        attempts: 1,
        firstFailureAt: 1,
        lastFailureAt: 1,
        lastError: { name: 'E', message },
        reason: 'non_retryable',
        source: 'q',
        quarantinedAt: 1,
      },
      { prefix: 'x-reprocess-' },
    );
    expect(isWellFormed(headers['x-reprocess-error-message'] as string)).toBe(true);
    const long = `${'b'.repeat(4095)}😀`;
    expect(isWellFormed(describeFailure(new Error(long)).message)).toBe(true);
  });
});
