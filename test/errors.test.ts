import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  IdempotencyInProgressError,
  RetryExhaustedError,
  StoreUnavailableError,
  isReprocessError,
} from '../src/errors.js';

describe('errors', () => {
  it('carry name, code, cause and are recognised by the guard', () => {
    const cause = new Error('boom');
    const e = new RetryExhaustedError(3, cause);
    expect(e.name).toBe('RetryExhaustedError');
    expect(e.code).toBe(ErrorCode.RETRY_EXHAUSTED);
    expect(e.cause).toBe(cause);
    expect(e.attempts).toBe(3);
    expect(isReprocessError(e)).toBe(true);
    expect(isReprocessError(e, ErrorCode.RETRY_EXHAUSTED)).toBe(true);
    expect(isReprocessError(e, ErrorCode.LEASE_LOST)).toBe(false);
    expect(isReprocessError(cause)).toBe(false);
  });

  it('recognises an error from another copy of the package by its registered brand', () => {
    const foreign = Object.assign(new Error('x'), { code: 'STORE_UNAVAILABLE' });
    Object.defineProperty(foreign, Symbol.for('reprocess.error'), { value: true });
    expect(isReprocessError(foreign, 'STORE_UNAVAILABLE')).toBe(true);
  });

  it('sets HTTP status and default retryability', () => {
    expect(new IdempotencyInProgressError(1500).status).toBe(409);
    expect(new IdempotencyInProgressError(1500).retryable).toBe(true);
    expect(new StoreUnavailableError('down').status).toBe(503);
  });
});
