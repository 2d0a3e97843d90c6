import { describe, expect, it, vi } from 'vitest';
import {
  ErrorCode,
  RecordCorruptError,
  StoreUnavailableError,
  isReprocessError,
} from '../../src/errors.js';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import { hashKey } from '../../src/idempotency/hash.js';
import type { IdempotencyRecord, IdempotencyStore } from '../../src/idempotency/store.js';
import type { OperationIdentity } from '../../src/idempotency/types.js';
import { setup, transientError } from './fixtures.js';

const identity: OperationIdentity = { operation: 'op', key: 'k' };
const storedKey = hashKey({ operation: 'op', key: 'k' });

function record(patch: Partial<IdempotencyRecord> | Record<string, unknown>): IdempotencyRecord {
  return {
    key: storedKey,
    fingerprint: '',
    status: 'completed',
    token: 1,
    attempts: 1,
    leaseUntil: 0,
    expiresAt: Number.MAX_SAFE_INTEGER,
    result: '"stored"',
    steps: {},
    createdAt: 0,
    updatedAt: 0,
    ...patch,
  } as IdempotencyRecord;
}

/** The memory store with some methods replaced. */
function patched(overrides: Partial<Record<keyof IdempotencyStore, unknown>>) {
  const { clock, store } = setup();
  return {
    clock,
    store: { ...store, name: 'patched', ...overrides } as IdempotencyStore,
    inner: store,
  };
}

describe('a store that fails or answers garbage', () => {
  it('begin throwing: StoreUnavailableError (503) and fn never runs', async () => {
    const cause = new Error('ECONNREFUSED 127.0.0.1:5432');
    const { clock, store } = patched({
      begin: async () => {
        throw cause;
      },
    });
    const fn = vi.fn(async () => 1);
    const error = await executeIdempotent(identity, fn, { store, clock }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ status: 503, retryable: true, cause });
    expect((error as Error).message).toMatch(/store "patched" failed in begin\(\): ECONNREFUSED/);
    expect(fn).not.toHaveBeenCalled();
  });

  it('begin throwing synchronously or a non-Error is handled the same way', async () => {
    const { clock, store } = patched({
      begin: () => {
        throw 'socket hang up';
      },
    });
    const fn = vi.fn(async () => 1);
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toBeInstanceOf(
      StoreUnavailableError,
    );
    expect(fn).not.toHaveBeenCalled();
  });

  it('a reprocess error from the store passes through unchanged', async () => {
    const own = new RecordCorruptError('row 7 is not JSON');
    const { clock, store } = patched({
      begin: async () => {
        throw own;
      },
    });
    await expect(executeIdempotent(identity, async () => 1, { store, clock })).rejects.toBe(own);
  });

  it('complete throwing: StoreUnavailableError after the run; a retry resumes from the steps', async () => {
    const { clock, store, inner } = patched({
      complete: async () => {
        throw new Error('timeout');
      },
    });
    const charge = vi.fn(async () => 'ch_1');
    await expect(
      executeIdempotent(identity, async (ctx) => ctx.step('charge', charge), {
        store,
        clock,
        lease: '5s',
      }),
    ).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    // The lease ends on its own, and the healthy store resumes without charging again.
    await clock.advance(5_000);
    const outcome = await executeIdempotent(identity, async (ctx) => ctx.step('charge', charge), {
      store: inner,
      clock,
    });
    expect(outcome.value).toBe('ch_1');
    expect(charge).toHaveBeenCalledTimes(1);
  });

  it('saveStep throwing: StoreUnavailableError from the step', async () => {
    const { clock, store } = patched({
      saveStep: async () => {
        throw new Error('disk full');
      },
    });
    await expect(
      executeIdempotent(identity, async (ctx) => ctx.step('s', async () => 1), { store, clock }),
    ).rejects.toSatisfy((e: unknown) => isReprocessError(e, ErrorCode.STORE_UNAVAILABLE));
  });

  it('release or fail throwing: the caller still gets the error fn threw', async () => {
    const down = async () => {
      throw new Error('down');
    };
    const { clock, store } = patched({ release: down, fail: down });
    const retryable = transientError('upstream reset');
    await expect(
      executeIdempotent(
        identity,
        async () => {
          throw retryable;
        },
        { store, clock },
      ),
    ).rejects.toBe(retryable);
    const final = new Error('declined');
    await expect(
      executeIdempotent(
        { operation: 'op', key: 'k2' },
        async () => {
          throw final;
        },
        { store, clock },
      ),
    ).rejects.toBe(final);
  });

  const garbage: [string, unknown][] = [
    ['no object', undefined],
    ['an unknown kind', { kind: 'maybe' }],
    [
      'an acquisition without a token',
      { kind: 'acquired', leaseUntil: 1, attempts: 1, steps: {}, takeover: false },
    ],
    [
      'an acquisition with bad steps',
      { kind: 'acquired', token: 1, leaseUntil: 1, attempts: 1, steps: { a: 1 }, takeover: false },
    ],
    ['a record with an unknown status', { kind: 'existing', record: record({ status: 'done' }) }],
    ['a record with a string token', { kind: 'existing', record: record({ token: '7' }) }],
    [
      'a completed record without a result',
      { kind: 'existing', record: record({ result: undefined }) },
    ],
    [
      'a failed record without an error',
      { kind: 'existing', record: record({ status: 'failed' }) },
    ],
    ['a record without steps', { kind: 'existing', record: record({ steps: null }) }],
  ];
  for (const [title, answer] of garbage) {
    it(`begin answering ${title}: RecordCorruptError and fn never runs`, async () => {
      const { clock, store } = patched({ begin: async () => answer });
      const fn = vi.fn(async () => 1);
      const error = await executeIdempotent(identity, fn, { store, clock }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(RecordCorruptError);
      expect((error as Error).message).toMatch(/store "patched" begin\(\) returned/);
      expect(fn).not.toHaveBeenCalled();
    });
  }

  it('a stored result that cannot be decoded: RecordCorruptError', async () => {
    const { clock, store } = patched({
      begin: async () => ({ kind: 'existing', record: record({ result: '{not json' }) }),
    });
    await expect(executeIdempotent(identity, async () => 1, { store, clock })).rejects.toThrow(
      /the stored result cannot be read back/,
    );
  });

  it('a stored failure that cannot be decoded: RecordCorruptError', async () => {
    const { clock, store } = patched({
      begin: async () => ({
        kind: 'existing',
        record: record({ status: 'failed', result: undefined, error: '[1,2]' }),
      }),
    });
    await expect(
      executeIdempotent(identity, async () => 1, { store, clock }),
    ).rejects.toBeInstanceOf(RecordCorruptError);
  });

  it('a stored step that cannot be decoded: RecordCorruptError from ctx.step', async () => {
    const { clock, store } = patched({
      begin: async () => ({
        kind: 'acquired',
        token: 1,
        leaseUntil: clock.now() + 30_000,
        attempts: 2,
        steps: { charge: '{"$t":"nope"}' },
        takeover: true,
      }),
    });
    await expect(
      executeIdempotent(identity, async (ctx) => ctx.step('charge', async () => 'again'), {
        store,
        clock,
        rememberFailures: false,
      }),
    ).rejects.toThrow(/stored result of step "charge" cannot be read back/);
  });

  it('complete answering garbage: RecordCorruptError', async () => {
    const { clock, store } = patched({ complete: async () => ({ kind: 'fine' }) });
    await expect(executeIdempotent(identity, async () => 1, { store, clock })).rejects.toThrow(
      /complete\(\) returned neither ok nor lease_lost/,
    );
  });

  it('accepts null for an absent result or error (SQL NULL)', async () => {
    const { clock, store } = patched({
      begin: async () => ({
        kind: 'existing',
        record: record({
          status: 'in_progress',
          result: null,
          error: null,
          leaseUntil: clock.now() + 1000,
        }),
      }),
    });
    await expect(
      executeIdempotent(identity, async () => 1, { store, clock }),
    ).rejects.toMatchObject({
      code: ErrorCode.IDEMPOTENCY_IN_PROGRESS,
      retryAfterMs: 1000,
    });
  });
});
