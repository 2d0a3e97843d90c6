import { describe, expect, it, vi } from 'vitest';
import {
  DuplicateRequestError,
  ErrorCode,
  IdempotencyInProgressError,
  IdempotencyKeyReuseError,
  InvalidArgumentError,
  ResultNotStorableError,
  isReprocessError,
} from '../../src/errors.js';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import { ReplayedFailureError } from '../../src/idempotency/failure.js';
import { hashKey } from '../../src/idempotency/hash.js';
import type { Codec, ExecuteOptions, OperationIdentity } from '../../src/idempotency/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { deferred, settle, setup, transientError } from './fixtures.js';

const id = (key = 'k1', fingerprintOf: unknown = { amount: 10 }): OperationIdentity => ({
  operation: 'charge',
  key,
  fingerprintOf,
});

describe('executeIdempotent', () => {
  it('runs once and replays the first outcome, decoded, on a repeat', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => ({ id: 'inv_1', at: new Date(5), total: 10n }));
    const options = { store, clock };

    const first = await executeIdempotent(id(), fn, options);
    expect(first.replayed).toBe(false);
    expect(first.token).toBeTypeOf('number');
    expect(first.key).toBe(hashKey({ operation: 'charge', key: 'k1' }));

    const second = await executeIdempotent(id(), fn, options);
    expect(second).toEqual({
      value: { id: 'inv_1', at: new Date(5), total: 10n },
      replayed: true,
      key: first.key,
    });
    expect(second.value.at).toBeInstanceOf(Date);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('gives the context the hashed key, token, attempt 1 and a live signal', async () => {
    const { clock, store } = setup();
    const outcome = await executeIdempotent(
      id(),
      async (ctx) => ({
        key: ctx.key,
        token: ctx.token,
        attempt: ctx.attempt,
        resumed: ctx.resumed,
        aborted: ctx.signal.aborted,
      }),
      { store, clock },
    );
    expect(outcome.value).toEqual({
      key: outcome.key,
      token: outcome.token,
      attempt: 1,
      resumed: false,
      aborted: false,
    });
  });

  it('rejects a repeat of a completed operation under onDuplicate: reject', async () => {
    const { clock, store } = setup();
    const options = { store, clock, onDuplicate: 'reject' as const };
    await executeIdempotent(id(), async () => 1, options);
    const repeat = executeIdempotent(id(), async () => 2, options);
    await expect(repeat).rejects.toBeInstanceOf(DuplicateRequestError);
    await expect(repeat).rejects.toMatchObject({ code: ErrorCode.DUPLICATE_REQUEST, status: 409 });
  });

  it('refuses a key reused with another payload (422), completed or in progress', async () => {
    const { clock, store } = setup();
    await executeIdempotent(id('done', { amount: 10 }), async () => 1, { store, clock });
    const reuse = executeIdempotent(id('done', { amount: 11 }), async () => 2, { store, clock });
    await expect(reuse).rejects.toBeInstanceOf(IdempotencyKeyReuseError);
    await expect(reuse).rejects.toMatchObject({ status: 422 });

    const gate = deferred();
    const running = executeIdempotent(id('busy', { amount: 1 }), () => gate.promise, {
      store,
      clock,
    });
    await settle();
    await expect(
      executeIdempotent(id('busy', { amount: 2 }), async () => undefined, { store, clock }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReuseError);
    gate.resolve();
    await running;
  });

  it('skips the payload check when the identity has no fingerprintOf', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => 'first');
    await executeIdempotent({ operation: 'op', key: 'k' }, fn, { store, clock });
    const again = await executeIdempotent({ operation: 'op', key: 'k' }, fn, { store, clock });
    expect(again).toMatchObject({ value: 'first', replayed: true });
    expect((await store.get(again.key))?.fingerprint).toBe('');
  });

  it('answers in-progress with IdempotencyInProgressError and the time left on the lease', async () => {
    const { clock, store } = setup();
    const gate = deferred();
    const options = { store, clock, lease: '30s', heartbeat: false } satisfies ExecuteOptions<void>;
    const first = executeIdempotent(id(), () => gate.promise, options);
    await clock.advance(12_000);
    const second = executeIdempotent(id(), async () => undefined, options);
    await expect(second).rejects.toBeInstanceOf(IdempotencyInProgressError);
    await expect(second).rejects.toMatchObject({ retryAfterMs: 18_000, status: 409 });
    gate.resolve();
    await first;
  });

  it('waits for a running operation under onInProgress: wait, then replays its result', async () => {
    const { clock, store } = setup();
    const gate = deferred<string>();
    const first = executeIdempotent(id(), () => gate.promise, { store, clock });
    await settle();
    const fn = vi.fn(async () => 'second');
    const waiter = executeIdempotent(id(), fn, {
      store,
      clock,
      onInProgress: { wait: '5s', poll: '100ms' },
    });
    await clock.advance(1_000);
    gate.resolve('first');
    await first;
    await clock.advance(100);
    await expect(waiter).resolves.toMatchObject({ value: 'first', replayed: true });
    expect(fn).not.toHaveBeenCalled();
  });

  it('gives up waiting at the bound with IdempotencyInProgressError', async () => {
    const { clock, store } = setup();
    const gate = deferred();
    const first = executeIdempotent(id(), () => gate.promise, { store, clock });
    await settle();
    const waiter = executeIdempotent(id(), async () => undefined, {
      store,
      clock,
      onInProgress: { wait: 2_000, poll: 500 },
    });
    const rejected = expect(waiter).rejects.toBeInstanceOf(IdempotencyInProgressError);
    await clock.advance(2_000);
    await rejected;
    gate.resolve();
    await first;
  });

  it('a waiter polls begin at the poll interval up to the bound, never in a busy loop', async () => {
    const { clock, store } = setup();
    const begins = vi.spyOn(store, 'begin');
    const gate = deferred();
    const first = executeIdempotent(id(), () => gate.promise, { store, clock });
    await settle();
    expect(begins).toHaveBeenCalledTimes(1);
    const start = clock.now();
    const waiter = executeIdempotent(id(), async () => undefined, {
      store,
      clock,
      onInProgress: { wait: '10s', poll: '1s' },
    });
    const rejected = waiter.catch((e: unknown) => e);
    await settle();
    // No time passes: one begin, then the waiter sleeps.
    expect(begins).toHaveBeenCalledTimes(2);
    await clock.advance(9_999);
    expect(begins).toHaveBeenCalledTimes(11);
    await clock.advance(1);
    const error = await rejected;
    expect(error).toBeInstanceOf(IdempotencyInProgressError);
    expect(clock.now() - start).toBe(10_000);
    // One begin at the start, one per poll, one at the bound: 1 + 10.
    expect(begins).toHaveBeenCalledTimes(12);
    expect((error as IdempotencyInProgressError).retryAfterMs).toBeGreaterThan(0);
    expect((error as IdempotencyInProgressError).retryAfterMs).toBeLessThanOrEqual(30_000);
    gate.resolve();
    await first;
    // Nothing of the waiter's is left behind.
    expect(clock.pending).toBe(0);
  });

  it('a poll longer than the longest timer (24.8 days) does not poll in a loop', async () => {
    // Node (and vitest's fake timers, which copy it) run a timer longer than 2^31 - 1 ms
    // after 1 ms: the real timers of systemClock are what this is about.
    vi.useFakeTimers();
    try {
      const store = createMemoryStore();
      const gate = deferred();
      const first = executeIdempotent(id(), () => gate.promise, { store, lease: '100d' });
      await vi.advanceTimersByTimeAsync(0);
      const begins = vi.spyOn(store, 'begin');
      const waiter = executeIdempotent(id(), async () => undefined, {
        store,
        lease: '100d',
        onInProgress: { wait: '60d', poll: '30d' },
      });
      const settled = waiter.catch((e: unknown) => e);
      await vi.advanceTimersByTimeAsync(10_000);
      expect(begins).toHaveBeenCalledTimes(1);
      await vi.advanceTimersByTimeAsync(61 * 86_400_000);
      expect(await settled).toBeInstanceOf(IdempotencyInProgressError);
      expect(begins.mock.calls.length).toBeLessThanOrEqual(5);
      gate.resolve();
      await first;
    } finally {
      vi.useRealTimers();
    }
  });

  it('a waiter takes over when the holder crashed and its lease ends', async () => {
    const { clock, store } = setup();
    // The first holder never finishes and never heartbeats: a crashed worker.
    void executeIdempotent(id(), () => new Promise<never>(() => {}), {
      store,
      clock,
      lease: '1s',
      heartbeat: false,
    });
    await settle();
    const waiter = executeIdempotent(
      id(),
      async (ctx) => ({ attempt: ctx.attempt, resumed: ctx.resumed }),
      {
        store,
        clock,
        lease: '1s',
        onInProgress: { wait: '5s', poll: '200ms' },
      },
    );
    await clock.advance(1_200);
    await expect(waiter).resolves.toMatchObject({
      value: { attempt: 2, resumed: true },
      replayed: false,
    });
  });

  it('bounds the retry-after hint by the lease, even when the stored lease is far ahead', async () => {
    const { clock, store } = setup();
    const skewed = {
      ...store,
      begin: async () => ({
        kind: 'existing' as const,
        record: {
          key: 'x',
          fingerprint: '',
          status: 'in_progress' as const,
          token: 1,
          attempts: 1,
          leaseUntil: clock.now() + 3_600_000,
          expiresAt: clock.now() + 7_200_000,
          steps: {},
          createdAt: 0,
          updatedAt: 0,
        },
      }),
    };
    await expect(
      executeIdempotent({ operation: 'op', key: 'k' }, async () => 1, {
        store: skewed,
        clock,
        lease: '10s',
      }),
    ).rejects.toMatchObject({ code: ErrorCode.IDEMPOTENCY_IN_PROGRESS, retryAfterMs: 10_000 });
  });

  it('a waiter runs the operation itself when the holder releases after a retryable failure', async () => {
    const { clock, store } = setup();
    const gate = deferred();
    const first = executeIdempotent(
      id(),
      async () => {
        await gate.promise;
        throw transientError();
      },
      { store, clock },
    );
    await settle();
    const waiter = executeIdempotent(id(), async (ctx) => `ran on attempt ${ctx.attempt}`, {
      store,
      clock,
      onInProgress: { wait: '5s', poll: '100ms' },
    });
    await clock.advance(300);
    gate.resolve();
    await expect(first).rejects.toMatchObject({ code: 'ECONNRESET' });
    await clock.advance(100);
    await expect(waiter).resolves.toMatchObject({ value: 'ran on attempt 2', replayed: false });
  });

  it('releases on a retryable failure so the next attempt runs again', async () => {
    const { clock, store } = setup();
    let calls = 0;
    const fn = async (ctx: { attempt: number; resumed: boolean }) => {
      calls++;
      if (calls === 1) throw transientError();
      return { attempt: ctx.attempt, resumed: ctx.resumed };
    };
    const first = executeIdempotent(id(), fn, { store, clock });
    await expect(first).rejects.toMatchObject({ code: 'ECONNRESET' });
    const record = await store.get(hashKey({ operation: 'charge', key: 'k1' }));
    expect(record).toMatchObject({ status: 'in_progress', leaseUntil: 0 });

    const second = await executeIdempotent(id(), fn, { store, clock });
    expect(second.value).toEqual({ attempt: 2, resumed: true });
    expect(calls).toBe(2);
  });

  it('remembers a non-retryable failure and replays it without running again', async () => {
    const { clock, store } = setup();
    const declined = Object.assign(new Error('card declined'), {
      name: 'CardDeclinedError',
      code: 'CARD_DECLINED',
      status: 402,
    });
    const fn = vi.fn(async () => {
      throw declined;
    });
    await expect(executeIdempotent(id(), fn, { store, clock })).rejects.toBe(declined);

    const replay = await executeIdempotent(id(), fn, { store, clock }).catch((e: unknown) => e);
    expect(replay).toBeInstanceOf(ReplayedFailureError);
    expect(replay).toMatchObject({
      name: 'CardDeclinedError',
      code: 'CARD_DECLINED',
      message: 'card declined',
      status: 402,
      replayed: true,
      retryable: false,
    });
    expect(isReprocessError(replay, 'CARD_DECLINED')).toBe(true);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('remembers a thrown value that cannot be printed (no stuck in-progress record)', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => {
      throw Object.create(null);
    });
    await expect(executeIdempotent(id(), fn, { store, clock })).rejects.toSatisfy(
      (e: unknown) => typeof e === 'object' && e !== null && Object.getPrototypeOf(e) === null,
    );
    expect((await store.get(hashKey({ operation: 'charge', key: 'k1' })))?.status).toBe('failed');
    await expect(executeIdempotent(id(), fn, { store, clock })).rejects.toBeInstanceOf(
      ReplayedFailureError,
    );
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('stores a bounded failure: huge name, code and message are cut, no stack', async () => {
    const { clock, store } = setup();
    const huge = Object.assign(new Error('m'.repeat(1_000_000)), {
      name: 'N'.repeat(1_000_000),
      code: 'C'.repeat(1_000_000),
    });
    await expect(
      executeIdempotent(
        id(),
        async () => {
          throw huge;
        },
        { store, clock },
      ),
    ).rejects.toBe(huge);
    const stored = (await store.get(hashKey({ operation: 'charge', key: 'k1' })))?.error ?? '';
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.length).toBeLessThan(8_192);
    expect(stored).not.toContain('execute.test');
  });

  it('with rememberFailures: false a non-retryable failure releases instead', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => {
      throw new Error('bad input');
    });
    const options = { store, clock, rememberFailures: false };
    await expect(executeIdempotent(id(), fn, options)).rejects.toThrow('bad input');
    await expect(executeIdempotent(id(), fn, options)).rejects.toThrow('bad input');
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('with a rememberFailures predicate only matching errors are stored', async () => {
    const { clock, store } = setup();
    const options = {
      store,
      clock,
      rememberFailures: (e: unknown) => (e as { code?: string }).code === 'FINAL',
    };
    const notFinal = vi.fn(async () => {
      throw Object.assign(new Error('x'), { code: 'OTHER' });
    });
    await expect(executeIdempotent(id('a'), notFinal, options)).rejects.toThrow('x');
    await expect(executeIdempotent(id('a'), notFinal, options)).rejects.toThrow('x');
    expect(notFinal).toHaveBeenCalledTimes(2);

    const final = vi.fn(async () => {
      throw Object.assign(new Error('y'), { code: 'FINAL' });
    });
    await expect(executeIdempotent(id('b'), final, options)).rejects.toThrow('y');
    await expect(executeIdempotent(id('b'), final, options)).rejects.toBeInstanceOf(
      ReplayedFailureError,
    );
    expect(final).toHaveBeenCalledTimes(1);
  });

  it('a rememberFailures or classify that throws counts as not remembered: released, fn error kept', async () => {
    const { clock, store } = setup();
    const declined = Object.assign(new Error('card declined'), { code: 'DECLINED' });
    const fn = vi.fn(async () => {
      throw declined;
    });
    for (const broken of [
      {
        rememberFailures: () => {
          throw new TypeError('bad predicate');
        },
      },
      {
        classify: () => {
          throw new TypeError('bad classifier');
        },
      },
    ]) {
      fn.mockClear();
      const key = Object.keys(broken)[0] as string;
      const options = { store, clock, ...broken };
      await expect(executeIdempotent(id(key), fn, options)).rejects.toBe(declined);
      // Released, not left in progress for the lease: the next call runs at once.
      await expect(executeIdempotent(id(key), fn, options)).rejects.toBe(declined);
      expect(fn).toHaveBeenCalledTimes(2);
    }
  });

  it('refuses an async fingerprint: its promise would match every payload', async () => {
    const { clock, store } = setup();
    await expect(
      executeIdempotent(id('p', Promise.resolve({ amount: 10 })), async () => 1, { store, clock }),
    ).rejects.toThrow(/cannot fingerprint a promise/);
  });

  it('keeps a numeric error code on replay as originalCode', async () => {
    const { clock, store } = setup();
    const notFound = Object.assign(new Error('no such user'), { code: 5 });
    const fn = async () => {
      throw notFound;
    };
    await expect(executeIdempotent(id('grpc'), fn, { store, clock })).rejects.toBe(notFound);
    const replayed = await executeIdempotent(id('grpc'), fn, { store, clock }).catch((e) => e);
    expect(replayed).toBeInstanceOf(ReplayedFailureError);
    expect(replayed).toMatchObject({ code: 'REPLAYED_FAILURE', originalCode: 5 });
  });

  it('never remembers a retryable failure, even with rememberFailures: true', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => {
      throw transientError();
    });
    const options = { store, clock, rememberFailures: true };
    await expect(executeIdempotent(id(), fn, options)).rejects.toMatchObject({
      code: 'ECONNRESET',
    });
    await expect(executeIdempotent(id(), fn, options)).rejects.toMatchObject({
      code: 'ECONNRESET',
    });
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('classifies failures with the classify option before the default classifier', async () => {
    const { clock, store } = setup();
    const options = {
      store,
      clock,
      classify: (e: unknown) => {
        const code = (e as { code?: string }).code;
        if (code === 'LOCKED') return true;
        if (code === 'ECONNRESET') return false;
        return undefined;
      },
    };
    // Unknown to the default classifier, retryable here: released, runs again.
    const locked = vi.fn(async () => {
      throw Object.assign(new Error('row locked'), { code: 'LOCKED' });
    });
    await expect(executeIdempotent(id('a'), locked, options)).rejects.toThrow('row locked');
    await expect(executeIdempotent(id('a'), locked, options)).rejects.toThrow('row locked');
    expect(locked).toHaveBeenCalledTimes(2);
    // Retryable by default, final here: remembered.
    const reset = vi.fn(async () => {
      throw transientError();
    });
    await expect(executeIdempotent(id('b'), reset, options)).rejects.toMatchObject({
      code: 'ECONNRESET',
    });
    await expect(executeIdempotent(id('b'), reset, options)).rejects.toBeInstanceOf(
      ReplayedFailureError,
    );
    expect(reset).toHaveBeenCalledTimes(1);
  });

  it('releases instead of storing when shouldStore says no', async () => {
    const { clock, store } = setup();
    let n = 0;
    const fn = async () => ({ status: n++ === 0 ? 503 : 201 });
    const options = { store, clock, shouldStore: (v: { status: number }) => v.status < 500 };
    expect(await executeIdempotent(id(), fn, options)).toMatchObject({
      value: { status: 503 },
      replayed: false,
    });
    expect(await executeIdempotent(id(), fn, options)).toMatchObject({
      value: { status: 201 },
      replayed: false,
    });
    expect(await executeIdempotent(id(), fn, options)).toMatchObject({
      value: { status: 201 },
      replayed: true,
    });
  });

  it('records RESULT_NOT_STORABLE before complete, so a repeat does not run the effect again', async () => {
    const { clock, store } = setup();
    const effect = vi.fn();
    const fn = async () => {
      effect();
      return { invoice: 'inv_1', print: () => 'not data' };
    };
    const first = await executeIdempotent(id(), fn, { store, clock }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(ResultNotStorableError);
    expect(first).toMatchObject({ code: ErrorCode.RESULT_NOT_STORABLE });
    expect((first as Error).message).toMatch(/function.*\$\.print/);

    const repeat = await executeIdempotent(id(), fn, { store, clock }).catch((e: unknown) => e);
    expect(repeat).toMatchObject({ code: ErrorCode.RESULT_NOT_STORABLE, replayed: true });
    expect(effect).toHaveBeenCalledTimes(1);
  });

  it('records RESULT_NOT_STORABLE for a codec that writes a lone surrogate (no store keeps it), so the effect runs once', async () => {
    const { clock, store } = setup();
    const effect = vi.fn();
    const codec = { encode: () => '"cut \uD83D"', decode: (text: string) => JSON.parse(text) };
    const fn = async () => {
      effect();
      return 'ok';
    };
    const first = await executeIdempotent(id(), fn, { store, clock, codec }).catch((e) => e);
    expect(first).toMatchObject({ code: ErrorCode.RESULT_NOT_STORABLE });
    expect((first as Error).message).toMatch(/lone UTF-16 surrogate/);
    const repeat = await executeIdempotent(id(), fn, { store, clock, codec }).catch((e) => e);
    expect(repeat).toMatchObject({ code: ErrorCode.RESULT_NOT_STORABLE, replayed: true });
    expect(effect).toHaveBeenCalledTimes(1);
  });

  it('records RESULT_TOO_LARGE, measured on encoded UTF-8 bytes', async () => {
    const { clock, store } = setup();
    // 40 characters, 120 bytes of UTF-8 plus two quotes.
    const euros = '€'.repeat(40);
    const options = { store, clock, maxResultBytes: 100 };
    const small = await executeIdempotent(id('small'), async () => 'x'.repeat(98), options);
    expect(small.replayed).toBe(false);

    const effect = vi.fn(async () => euros);
    const big = await executeIdempotent(id('big'), effect, options).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(ResultNotStorableError);
    expect(big).toMatchObject({ code: ErrorCode.RESULT_TOO_LARGE });
    expect((big as Error).message).toMatch(/122 bytes.*maxResultBytes \(100\)/);
    await expect(executeIdempotent(id('big'), effect, options)).rejects.toMatchObject({
      code: ErrorCode.RESULT_TOO_LARGE,
      replayed: true,
    });
    expect(effect).toHaveBeenCalledTimes(1);
  });

  it('uses a pluggable codec for results', async () => {
    const { clock, store } = setup();
    const codec: Codec = {
      encode: (value) => `upper:${String(value).toUpperCase()}`,
      decode: (text) => text.slice('upper:'.length),
    };
    await executeIdempotent(id(), async () => 'hello', { store, clock, codec });
    const record = await store.get(hashKey({ operation: 'charge', key: 'k1' }));
    expect(record?.result).toBe('upper:HELLO');
    expect(
      await executeIdempotent(id(), async () => 'other', { store, clock, codec }),
    ).toMatchObject({
      value: 'HELLO',
      replayed: true,
    });
  });

  it('keeps records for the ttl, then starts a new operation', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => 'r');
    const options = { store, clock, ttl: '1h' };
    const first = await executeIdempotent(id(), fn, options);
    expect((await store.get(first.key))?.expiresAt).toBe(clock.now() + 3_600_000);
    await clock.advance(3_600_000 - 1);
    expect((await executeIdempotent(id(), fn, options)).replayed).toBe(true);
    await clock.advance(1);
    expect((await executeIdempotent(id(), fn, options)).replayed).toBe(false);
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('keeps tenants apart: the same key from two principals is two operations', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => 'done');
    const a = await executeIdempotent({ operation: 'pay', principal: 'tenant-a', key: 'k' }, fn, {
      store,
      clock,
    });
    const b = await executeIdempotent({ operation: 'pay', principal: 'tenant-b', key: 'k' }, fn, {
      store,
      clock,
    });
    const none = await executeIdempotent({ operation: 'pay', key: 'k' }, fn, { store, clock });
    expect([a.replayed, b.replayed, none.replayed]).toEqual([false, false, false]);
    expect(new Set([a.key, b.key, none.key]).size).toBe(3);
    expect(fn).toHaveBeenCalledTimes(3);
    const againA = await executeIdempotent(
      { operation: 'pay', principal: 'tenant-a', key: 'k' },
      fn,
      { store, clock },
    );
    expect(againA.replayed).toBe(true);
    expect(fn).toHaveBeenCalledTimes(3);
  });

  it('keeps no key, principal or fingerprinted input in clear in the store', async () => {
    const { clock, store } = setup();
    const secret = 'alice@example.com';
    const tenant = 'tenant-7f3a';
    const identity = {
      operation: 'signup',
      principal: tenant,
      key: secret,
      fingerprintOf: { email: secret, tenant },
    };
    const fn = async (ctx: { step<T>(n: string, w: () => Promise<T>): Promise<T> }) =>
      ctx.step('welcome', async () => 'sent');
    await executeIdempotent(identity, fn, { store, clock });
    const records = (await store.list()).records;
    expect(records).toHaveLength(1);
    const atRest = JSON.stringify(records);
    for (const clear of ['alice', 'example.com', tenant, 'signup']) {
      expect(atRest).not.toContain(clear);
    }
    expect(records[0]?.key).toMatch(/^[0-9a-f]{64}$/);
    expect(records[0]?.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('validates the identity', async () => {
    const { clock, store } = setup();
    const fn = vi.fn(async () => 1);
    const options = { store, clock };
    await expect(executeIdempotent({ operation: '', key: 'k' }, fn, options)).rejects.toThrow(
      /operation name/,
    );
    await expect(
      executeIdempotent({ operation: 'op', principal: '', key: 'k' }, fn, options),
    ).rejects.toThrow(/principal/);
    await expect(
      executeIdempotent({ operation: 'op', key: '' }, fn, options),
    ).rejects.toMatchObject({ code: ErrorCode.IDEMPOTENCY_KEY_INVALID });
    await expect(
      executeIdempotent({ operation: 'op', key: undefined as unknown as string }, fn, options),
    ).rejects.toMatchObject({ code: ErrorCode.IDEMPOTENCY_KEY_MISSING });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expect(
      executeIdempotent({ operation: 'op', key: 'k', fingerprintOf: circular }, fn, options),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(fn).not.toHaveBeenCalled();
  });

  describe('options', () => {
    const fn = async () => 1;
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['no store', { store: undefined }, /store.*required/],
      ['a store without begin', { store: { name: 'x' } }, /no begin\(\)/],
      ['a bad ttl', { ttl: 'soon' }, /ttl must be a duration with its unit/],
      ['a zero lease', { lease: 0 }, /lease must be longer than 0/],
      [
        'a heartbeat not shorter than the lease',
        { lease: '3s', heartbeat: '3s' },
        /heartbeat.*shorter/,
      ],
      ['an unknown onDuplicate', { onDuplicate: 'ignore' }, /onDuplicate must be/],
      ['an unknown onInProgress', { onInProgress: 'wait' }, /onInProgress must be/],
      ['a bad wait', { onInProgress: { wait: -1 } }, /onInProgress.wait/],
      ['a bad rememberFailures', { rememberFailures: 'yes' }, /rememberFailures must be/],
      ['a codec without decode', { codec: { encode: String } }, /codec must have/],
      ['a zero maxResultBytes', { maxResultBytes: 0 }, /maxResultBytes/],
      ['a bad shouldStore', { shouldStore: true }, /shouldStore/],
      ['a bad classify', { classify: 'retry' }, /classify must be a function/],
      ['a misspelt option', { leaseMs: 5000 }, /executeIdempotent\(\): unknown option "leaseMs"/],
    ];
    for (const [title, patch, message] of cases) {
      it(`rejects ${title} with InvalidArgumentError`, async () => {
        const { store } = setup();
        const run = executeIdempotent(id(), fn, { store, ...patch } as ExecuteOptions<number>);
        await expect(run).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(run).rejects.toThrow(message);
      });
    }
  });
});
