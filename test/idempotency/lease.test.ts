import { EventEmitter, once } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { IdempotencyInProgressError, LeaseLostError } from '../../src/errors.js';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import { hashKey } from '../../src/idempotency/hash.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import type { IdempotencyContext, OperationIdentity } from '../../src/idempotency/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { SteppedClock, acrossWallStep } from '../helpers/wall-step.js';
import { deferred, settle, setup } from './fixtures.js';

const identity: OperationIdentity = { operation: 'report', key: 'k1' };
const storedKey = hashKey({ operation: 'report', key: 'k1' });

/** The operation, on `store` with every heartbeat failing; `state.signal` is its signal. */
function runWithFailingBeats(store: IdempotencyStore, clock: FakeClock, lease: string) {
  const broken: IdempotencyStore = {
    ...store,
    heartbeat: async () => {
      throw new Error('connection refused');
    },
  };
  const gate = deferred();
  const state: { signal?: AbortSignal } = {};
  const run = executeIdempotent(
    identity,
    (ctx) => {
      state.signal = ctx.signal;
      return gate.promise;
    },
    { store: broken, clock, lease },
  );
  return { gate, state, run };
}

/** `store`, whose heartbeats fail while `down` is set (the store's other calls still work). */
function blippingBeats(store: IdempotencyStore): { store: IdempotencyStore; down: boolean } {
  const blip: { store: IdempotencyStore; down: boolean } = { store, down: false };
  blip.store = {
    ...store,
    heartbeat: (...args) =>
      blip.down ? Promise.reject(new Error('connection reset')) : store.heartbeat(...args),
  };
  return blip;
}

/**
 * Runs `fn` on a store whose heartbeats fail for a whole 3 s lease, nobody taking over; `fn`
 * is handed a promise that settles once that is over. What `fn` settled with, and what a
 * test needs next.
 */
async function presumedLost(
  fn: (ctx: IdempotencyContext, over: Promise<void>) => Promise<unknown>,
) {
  const { clock, store } = setup();
  const blip = blippingBeats(store);
  const options = { store: blip.store, clock, lease: '3s' };
  const over = deferred();
  const first = executeIdempotent(identity, (ctx) => fn(ctx, over.promise), options).catch(
    (e: unknown) => e,
  );
  await settle();
  blip.down = true;
  await clock.advance(3_500);
  blip.down = false;
  over.resolve();
  return { outcome: await first, store, options };
}

describe('leases, heartbeats and fencing', () => {
  it('heartbeats keep the lease of a long run (every lease/3 by default)', async () => {
    const { clock, store } = setup();
    const beats = vi.spyOn(store, 'heartbeat');
    const gate = deferred<string>();
    const long = executeIdempotent(identity, () => gate.promise, { store, clock, lease: '30s' });
    await settle();

    await clock.advance(100_000);
    expect(beats).toHaveBeenCalledTimes(10);
    expect(beats).toHaveBeenLastCalledWith(storedKey, expect.any(Number), 30_000);
    await expect(
      executeIdempotent(identity, async () => 'intruder', { store, clock, lease: '30s' }),
    ).rejects.toBeInstanceOf(IdempotencyInProgressError);

    gate.resolve('done');
    await expect(long).resolves.toMatchObject({ value: 'done', replayed: false });
    expect(clock.pending).toBe(0);
  });

  it('honours a custom heartbeat interval and heartbeat: false', async () => {
    const { clock, store } = setup();
    const beats = vi.spyOn(store, 'heartbeat');
    const gate = deferred();
    const run = executeIdempotent(identity, () => gate.promise, {
      store,
      clock,
      lease: '30s',
      heartbeat: '5s',
    });
    await settle();
    await clock.advance(20_000);
    expect(beats).toHaveBeenCalledTimes(4);
    gate.resolve();
    await run;

    beats.mockClear();
    const gate2 = deferred();
    const run2 = executeIdempotent({ operation: 'report', key: 'k2' }, () => gate2.promise, {
      store,
      clock,
      lease: '30s',
      heartbeat: false,
    });
    await settle();
    await clock.advance(20_000);
    expect(beats).not.toHaveBeenCalled();
    expect(clock.pending).toBe(0);
    gate2.resolve();
    await run2;
  });

  describe('clears every timer on every way out', () => {
    type Way = (ctx: IdempotencyContext) => Promise<unknown>;
    const ways: [string, Way, Partial<Record<keyof IdempotencyStore, unknown>>?][] = [
      ['success', async () => 'ok'],
      [
        'a final failure',
        async () => {
          throw new Error('boom');
        },
      ],
      [
        'a retryable failure',
        async () => {
          throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
        },
      ],
      [
        'a thrown step',
        async (ctx) =>
          ctx.step('s', async () => {
            throw new Error('step failed');
          }),
      ],
      ['a result that cannot be stored', async () => () => 'fn'],
      [
        'a lost lease at complete',
        async () => 'late',
        { complete: async () => ({ kind: 'lease_lost' }) },
      ],
      [
        'a lost lease at saveStep',
        async (ctx) => ctx.step('s', async () => 1),
        { saveStep: async () => ({ kind: 'lease_lost' }) },
      ],
      [
        'a store that fails at complete',
        async () => 'x',
        {
          complete: async () => {
            throw new Error('down');
          },
        },
      ],
    ];
    for (const [title, fn, overrides] of ways) {
      it(title, async () => {
        const { clock, store } = setup();
        const patched = { ...store, ...overrides } as IdempotencyStore;
        const gate = deferred();
        const run = executeIdempotent(
          identity,
          async (ctx) => {
            await gate.promise;
            return fn(ctx);
          },
          { store: patched, clock, lease: '30s' },
        );
        await settle();
        // While fn runs, the heartbeat (and its lease deadline) are armed.
        expect(clock.pending).toBeGreaterThan(0);
        await clock.advance(15_000);
        gate.resolve();
        await run.catch(() => undefined);
        expect(clock.pending).toBe(0);
      });
    }
  });

  it('a stale worker completes nothing and its signal aborts once the lease is taken over', async () => {
    const { clock, store } = setup();
    const options = { store, clock, lease: '30s' };
    const gate = deferred<string>();
    let stale: IdempotencyContext | undefined;
    const a = executeIdempotent(
      identity,
      (ctx) => {
        stale = ctx;
        return gate.promise;
      },
      options,
    );
    await settle();

    // Worker A stalls (a GC pause, a frozen container): time jumps past its lease without
    // its heartbeat timer getting a chance to run.
    clock.set(clock.now() + 31_000);
    const b = await executeIdempotent(identity, async () => 'B', options);
    expect(b).toMatchObject({ value: 'B', replayed: false });
    expect(b.token).toBeGreaterThan(stale?.token ?? Number.POSITIVE_INFINITY);

    // A's overdue heartbeat now runs and is refused: A learns it lost the lease.
    await clock.advance(0);
    expect(stale?.signal.aborted).toBe(true);
    expect(stale?.signal.reason).toBeInstanceOf(LeaseLostError);

    gate.resolve('A');
    await expect(a).rejects.toBeInstanceOf(LeaseLostError);
    expect((await store.get(storedKey))?.result).toBe('"B"');
    expect(await executeIdempotent(identity, async () => 'C', options)).toMatchObject({
      value: 'B',
      replayed: true,
    });
  });

  it('a step whose save finds the lease lost stops the worker: no later step runs, the signal aborts', async () => {
    const { clock, store } = setup();
    const options = { store, clock, lease: '30s' };
    let emails = 0;
    const gate = deferred();
    let staleSignal: AbortSignal | undefined;
    const stale = executeIdempotent(
      identity,
      async (ctx) => {
        staleSignal = ctx.signal;
        await ctx.step('charge', async () => {
          await gate.promise;
          return 'ch_A';
        });
        await ctx.step('email', async () => {
          emails++;
          return 'em_A';
        });
        return 'A';
      },
      options,
    ).catch((e: unknown) => e);
    await settle();
    // An operator removes the stuck record and a redelivery runs the operation to the end.
    expect(await store.delete(storedKey)).toBe(true);
    const fresh = await executeIdempotent(
      identity,
      async (ctx) => {
        await ctx.step('charge', async () => 'ch_B');
        await ctx.step('email', async () => {
          emails++;
          return 'em_B';
        });
        return 'B';
      },
      options,
    );
    expect(fresh.value).toBe('B');
    gate.resolve();
    expect(await stale).toBeInstanceOf(LeaseLostError);
    expect(staleSignal?.aborted).toBe(true);
    expect(emails).toBe(1);
  });

  it('a stale worker cannot record its failure either', async () => {
    const { clock, store } = setup();
    const options = { store, clock, lease: '10s', heartbeat: false };
    const gate = deferred();
    const a = executeIdempotent(identity, () => gate.promise, options);
    await settle();
    await clock.advance(10_000);
    const bGate = deferred<string>();
    const b = executeIdempotent(identity, () => bGate.promise, options);
    await settle();

    const declined = new Error('declined');
    gate.reject(declined);
    const error = await a.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LeaseLostError);
    expect((error as LeaseLostError).cause).toBe(declined);
    expect((await store.get(storedKey))?.status).toBe('in_progress');

    bGate.resolve('B');
    expect((await b).value).toBe('B');
  });

  it('presumes the lease lost when heartbeats fail for a whole lease', async () => {
    const { clock, store } = setup();
    const { gate, state, run } = runWithFailingBeats(store, clock, '30s');
    await settle();
    await clock.advance(20_000);
    expect(state.signal?.aborted).toBe(false);
    await clock.advance(10_000);
    expect(state.signal?.aborted).toBe(true);
    expect(state.signal?.reason).toBeInstanceOf(LeaseLostError);
    expect(clock.pending).toBe(0);
    gate.resolve();
    // Nobody took over, so the token still holds and the result is stored.
    await expect(run).resolves.toMatchObject({ replayed: false });
  });

  it("does not record fn's abort on the lost lease as the outcome: released, retried later", async () => {
    let runs = 0;
    // fn waits on a call that honours ctx.signal, as the docs ask: the abort rejects it with
    // an AbortError (a final error to the classifier), the LeaseLostError as its cause.
    const { outcome, store, options } = await presumedLost(async (ctx) => {
      runs++;
      await once(new EventEmitter(), 'reply', { signal: ctx.signal });
    });
    expect(outcome).toBeInstanceOf(LeaseLostError);
    expect((outcome as LeaseLostError).cause).toMatchObject({ name: 'AbortError' });
    // Nobody took over: the record was released (not failed), so the next call runs.
    expect(await store.get(storedKey)).toMatchObject({ status: 'in_progress', leaseUntil: 0 });
    const again = await executeIdempotent(identity, async () => 'charged', options);
    expect(again).toMatchObject({ value: 'charged', replayed: false });
    expect(runs).toBe(1);
  });

  it('takes an abort through a controller linked without the reason as the lost lease too', async () => {
    const { outcome, store, options } = await presumedLost(async (ctx) => {
      // The older way to link signals: the reason is not passed on, so the AbortError
      // carries no trace of the lease's error.
      const linked = new AbortController();
      ctx.signal.addEventListener('abort', () => linked.abort());
      await once(new EventEmitter(), 'reply', { signal: linked.signal });
    });
    expect(outcome).toBeInstanceOf(LeaseLostError);
    expect((await store.get(storedKey))?.status).toBe('in_progress');
    expect(await executeIdempotent(identity, async () => 'ran', options)).toMatchObject({
      value: 'ran',
      replayed: false,
    });
  });

  it('settles an error whose cause cannot be read after the lease was presumed lost', async () => {
    const odd = new Error('odd failure');
    Object.defineProperty(odd, 'cause', {
      get() {
        throw new TypeError('cause getter exploded');
      },
    });
    const { outcome, store } = await presumedLost(async (_ctx, over) => {
      await over;
      throw odd;
    });
    // fn's own error, settled: not an internal TypeError, not a record left with a live lease.
    expect(outcome).toBe(odd);
    const record = await store.get(storedKey);
    // Not remembered (the classifier cannot read it either): released, for a retry to run.
    expect(record).toMatchObject({ status: 'in_progress', leaseUntil: 0 });
  });

  it("records fn's own final failure after the lease was presumed lost (nobody took it)", async () => {
    const declined = Object.assign(new Error('card declined'), { retryable: false });
    // fn does not listen to ctx.signal: its provider answers with a decline after the store
    // was away for a whole lease. The decline is fn's own outcome, not the lease's abort.
    const { outcome, store, options } = await presumedLost(async (_ctx, over) => {
      await over;
      throw declined;
    });
    expect(outcome).toBe(declined);
    // The fenced fail() went through (the token still held): a repeat replays the decline.
    expect((await store.get(storedKey))?.status).toBe('failed');
    const again = await executeIdempotent(identity, async () => 'ran again', options).catch(
      (e: unknown) => e,
    );
    expect(again).toMatchObject({ message: 'card declined' });
  });

  it('counts the lease on the monotonic clock: a step of the wall clock neither keeps nor ends it', async () => {
    for (const step of [-8_000, +8_000]) {
      const clock = new SteppedClock();
      const store = createMemoryStore({ clock: new FakeClock() });
      const { gate, state, run } = runWithFailingBeats(store, clock, '10s');
      await settle();
      await clock.advance(1_000);
      clock.step = step;
      await clock.advance(8_000);
      // 9 s into a 10 s lease, whichever way the wall clock jumped.
      expect(state.signal?.aborted, `step ${step}`).toBe(false);
      await clock.advance(1_000);
      expect(state.signal?.aborted, `step ${step}`).toBe(true);
      expect(state.signal?.reason).toBeInstanceOf(LeaseLostError);
      gate.resolve();
      await run.catch(() => undefined);
      expect(clock.pending).toBe(0);
    }
  });

  it("with a store that decides leases on this process's wall clock, a forward step ends the lease there too: no step runs twice", async () => {
    const clock = new SteppedClock();
    // The memory store (as SQLite) takes a lease as over when the wall clock passes its end.
    const { outcomeOfA, sent } = await acrossWallStep(createMemoryStore({ clock }), clock, settle);
    // A is 5 s into its 30 s lease on the monotonic clock, but its email must not go out.
    expect(outcomeOfA).toBeInstanceOf(LeaseLostError);
    expect(sent).toEqual(['B']);
  });

  it('counts the lease from when begin was sent, not from when its answer arrived', async () => {
    const { clock, store } = setup();
    const sentAt = clock.now();
    // The store acquires at once, but its answer takes 20 s to arrive; heartbeats fail.
    const slow: IdempotencyStore = {
      ...store,
      begin: async (...args) => {
        const begun = await store.begin(...args);
        await new Promise<void>((resolve) => clock.setTimer(20_000, resolve));
        return begun;
      },
      heartbeat: async () => {
        throw new Error('connection refused');
      },
    };
    let signal: AbortSignal | undefined;
    void executeIdempotent(
      identity,
      (ctx) => {
        signal = ctx.signal;
        return new Promise<never>(() => {});
      },
      { store: slow, clock, lease: '30s' },
    );
    await clock.advance(20_000);
    expect(signal?.aborted).toBe(false);
    // The store's lease ends 30 s after it acquired: another worker may take over from here.
    await clock.advance(10_000);
    expect(clock.now() - sentAt).toBe(30_000);
    expect((await store.begin(storedKey, '', 30_000, 60_000)).kind).toBe('acquired');
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(LeaseLostError);
  });

  it('a lease longer than the longest timer (24.8 days) neither beats in a loop nor ends early', async () => {
    // Node (and vitest's fake timers, which copy it) run a timer longer than 2^31 - 1 ms
    // after 1 ms: the real timers of systemClock are what this is about.
    vi.useFakeTimers();
    try {
      const store = createMemoryStore();
      const beats = vi.spyOn(store, 'heartbeat');
      const gate = deferred();
      let signal: AbortSignal | undefined;
      const run = executeIdempotent(
        identity,
        (ctx) => {
          signal = ctx.signal;
          return gate.promise;
        },
        { store, lease: '100d' },
      );
      await vi.advanceTimersByTimeAsync(60_000);
      expect(beats).not.toHaveBeenCalled();
      expect(signal?.aborted).toBe(false);
      // The first beat is due after a third of the lease, and it keeps the lease.
      await vi.advanceTimersByTimeAsync(34 * 86_400_000);
      expect(beats.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(beats.mock.calls.length).toBeLessThanOrEqual(3);
      expect(signal?.aborted).toBe(false);
      gate.resolve();
      await expect(run).resolves.toMatchObject({ replayed: false });
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('presumes the lease lost when a heartbeat hangs past the end of the lease', async () => {
    const { clock, store } = setup();
    // A stalled connection: the heartbeat call never answers.
    const stalled: IdempotencyStore = { ...store, heartbeat: () => new Promise<never>(() => {}) };
    const gate = deferred();
    let signal: AbortSignal | undefined;
    const run = executeIdempotent(
      identity,
      (ctx) => {
        signal = ctx.signal;
        return gate.promise;
      },
      { store: stalled, clock, lease: '30s' },
    );
    await settle();
    await clock.advance(29_999);
    expect(signal?.aborted).toBe(false);
    await clock.advance(1);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(LeaseLostError);
    expect(clock.pending).toBe(0);

    // Another worker may now take over; the stalled one writes nothing.
    const b = await executeIdempotent(identity, async () => 'B', { store, clock, lease: '30s' });
    expect(b.replayed).toBe(false);
    gate.resolve();
    await expect(run).rejects.toBeInstanceOf(LeaseLostError);
  });
});
