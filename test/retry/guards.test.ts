import { describe, expect, it } from 'vitest';
import {
  AbortedError,
  AttemptTimeoutError,
  DeadlineExceededError,
  NonRetryableError,
  RetryBudgetExhaustedError,
  RetryExhaustedError,
} from '../../src/errors.js';
import {
  isAbortedError,
  isAttemptTimeoutError,
  isDeadlineExceededError,
  isNonRetryableError,
  isRetryBudgetExhaustedError,
  isRetryExhaustedError,
} from '../../src/retry/guards.js';

describe('retry error guards', () => {
  const errors = {
    exhausted: new RetryExhaustedError(3, new Error('x')),
    deadline: new DeadlineExceededError(2, new Error('x')),
    budget: new RetryBudgetExhaustedError(1, new Error('x')),
    timeout: new AttemptTimeoutError(100),
    aborted: new AbortedError('why'),
    nonRetryable: new NonRetryableError('no', { code: 'CARD_DECLINED' }),
  };
  const guards = {
    exhausted: isRetryExhaustedError,
    deadline: isDeadlineExceededError,
    budget: isRetryBudgetExhaustedError,
    timeout: isAttemptTimeoutError,
    aborted: isAbortedError,
    nonRetryable: isNonRetryableError,
  };

  it('each guard recognises its own error and no other', () => {
    for (const [guardName, guard] of Object.entries(guards)) {
      for (const [errorName, error] of Object.entries(errors)) {
        expect(guard(error), `${guardName}(${errorName})`).toBe(guardName === errorName);
      }
      expect(guard(new Error('plain'))).toBe(false);
      expect(guard(undefined)).toBe(false);
    }
  });

  it('each error has name, code and cause', () => {
    expect(errors.exhausted.name).toBe('RetryExhaustedError');
    expect(errors.exhausted.code).toBe('RETRY_EXHAUSTED');
    expect(errors.deadline.cause).toBeInstanceOf(Error);
    expect(errors.aborted.cause).toBe('why');
    expect(errors.nonRetryable.code).toBe('CARD_DECLINED');
    expect(errors.nonRetryable.retryable).toBe(false);
  });

  it('a copy of an error from another package instance is recognised by its brand', () => {
    const foreign = Object.assign(new Error('x'), { code: 'RETRY_EXHAUSTED' });
    Object.defineProperty(foreign, Symbol.for('reprocess.error'), { value: true });
    expect(isRetryExhaustedError(foreign)).toBe(true);
    expect(isRetryExhaustedError(Object.assign(new Error('x'), { code: 'RETRY_EXHAUSTED' }))).toBe(
      false,
    );
  });
});
