import { describe, expect, it } from 'vitest';
import { ErrorCode, NonRetryableError, RecordCorruptError } from '../../src/errors.js';
import {
  ReplayedFailureError,
  decodeFailure,
  describeFailure,
  encodeFailure,
} from '../../src/idempotency/failure.js';

describe('remembered failures', () => {
  it('keep name, code, message and HTTP status', () => {
    const error = Object.assign(new RangeError('amount too large'), {
      code: 'AMOUNT_LIMIT',
      statusCode: 422,
    });
    const replayed = decodeFailure(encodeFailure(error));
    expect(replayed).toBeInstanceOf(ReplayedFailureError);
    expect(replayed).toMatchObject({
      name: 'RangeError',
      code: 'AMOUNT_LIMIT',
      originalCode: 'AMOUNT_LIMIT',
      message: 'amount too large',
      status: 422,
      replayed: true,
      retryable: false,
    });
  });

  it('keeps the code of a reprocess error', () => {
    const replayed = decodeFailure(encodeFailure(new NonRetryableError('nope')));
    expect(replayed).toMatchObject({ name: 'NonRetryableError', code: ErrorCode.NON_RETRYABLE });
  });

  it('uses REPLAYED_FAILURE when the original had no code, and handles thrown non-errors', () => {
    expect(decodeFailure(encodeFailure(new Error('plain')))).toMatchObject({
      code: ErrorCode.REPLAYED_FAILURE,
      originalCode: undefined,
      name: 'Error',
    });
    expect(describeFailure('a string')).toEqual({ name: 'Error', message: 'a string' });
    expect(describeFailure({ message: 'obj', status: 99 })).toEqual({
      name: 'Error',
      message: 'obj',
    });
  });

  it('cuts very long messages', () => {
    expect(describeFailure(new Error('x'.repeat(10_000))).message.length).toBeLessThan(4200);
  });

  it('bounds the stored name and code too, and never stores the stack', () => {
    const error = Object.assign(new Error('m'), {
      name: 'N'.repeat(100_000),
      code: 'C'.repeat(100_000),
    });
    const text = encodeFailure(error);
    expect(text.length).toBeLessThan(1_000);
    expect(text).not.toContain('at ');
    const replayed = decodeFailure(text);
    expect(replayed.name.startsWith('NNN')).toBe(true);
    expect(String(replayed.code).startsWith('CCC')).toBe(true);
  });

  it.each([
    ['a null-prototype object', () => Object.create(null) as object],
    [
      'an object whose toString throws',
      () => ({
        toString() {
          throw new Error('no');
        },
      }),
    ],
    [
      'an error whose message getter throws',
      () =>
        Object.defineProperty(new Error(), 'message', {
          get() {
            throw new Error('no');
          },
        }),
    ],
  ])('describes %s without throwing', (_, make) => {
    const failure = describeFailure(make());
    expect(failure.name).toBeTypeOf('string');
    expect(failure.message).toBeTypeOf('string');
    expect(decodeFailure(encodeFailure(make()))).toBeInstanceOf(ReplayedFailureError);
  });

  it.each(['not json', '[]', '{"message":"no name"}', '{"name":"E","message":"m","status":"x"}'])(
    'refuses a corrupt stored failure %j',
    (text) => {
      expect(() => decodeFailure(text)).toThrow(RecordCorruptError);
    },
  );
});
