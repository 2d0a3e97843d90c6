import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import {
  FirstBeatTicker,
  FirstBeatWaiter,
  firstBeats,
} from '../../src/idempotency/first-beat-ticker.js';
import type { IdempotencyContext } from '../../src/idempotency/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { deferred, settle, setup } from './fixtures.js';

/*
 * Leases on the system clock wait for their first heartbeat under one shared timer
 * (first-beat-ticker.ts). What must hold: a lease that outlives the wait beats exactly when it
 * would have with a timer of its own, whatever other leases came and went before it; one that
 * ends first leaves nothing that keeps the process alive; other clocks are not involved.
 */

/** A waiter that calls `onArm` with what the ticker handed it. */
class Waiter extends FirstBeatWaiter {
  constructor(private readonly onArm: (ms: number) => void) {
    super();
  }
  armFirstBeat(ms: number): void {
    this.onArm(ms);
  }
}

/** A waiter that records what the ticker handed it, at which (fake) time. */
function waiter(log: Array<[string, number, number]>, name: string): FirstBeatWaiter {
  return new Waiter((ms) => log.push([name, ms, performance.now()]));
}

/** Whether the ticker's shared timer keeps the process alive. */
function keepsAlive(ticker: FirstBeatTicker): boolean {
  const timer = (ticker as unknown as { timer?: { hasRef(): boolean } }).timer;
  return timer?.hasRef() ?? false;
}

describe('the shared first-beat timer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('hands every waiting lease the time left to its own first beat', async () => {
    vi.useFakeTimers();
    const ticker = new FirstBeatTicker();
    const log: Array<[string, number, number]> = [];
    const start = performance.now();
    ticker.add(waiter(log, 'a'), 10_000);
    await vi.advanceTimersByTimeAsync(4_000);
    ticker.add(waiter(log, 'b'), 10_000);
    await vi.advanceTimersByTimeAsync(5_999);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(log).toEqual([
      ['a', 0, start + 10_000],
      ['b', 4_000, start + 10_000],
    ]);
    expect(ticker.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('fires earlier for a lease due before the timer', async () => {
    vi.useFakeTimers();
    const ticker = new FirstBeatTicker();
    const log: Array<[string, number, number]> = [];
    ticker.add(waiter(log, 'slow'), 10_000);
    await vi.advanceTimersByTimeAsync(500);
    ticker.add(waiter(log, 'fast'), 1_000);
    await vi.advanceTimersByTimeAsync(999);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(log.map(([name, ms]) => [name, ms])).toEqual([
      ['slow', 8_500],
      ['fast', 0],
    ]);
    // The first timer was replaced, not left to fire as well.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a lease that leaves before its beat is never handed over', async () => {
    vi.useFakeTimers();
    const ticker = new FirstBeatTicker();
    const log: Array<[string, number, number]> = [];
    const gone = waiter(log, 'gone');
    const stays = waiter(log, 'stays');
    ticker.add(gone, 10_000);
    ticker.add(stays, 10_000);
    ticker.delete(gone);
    ticker.delete(gone);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(log.map(([name]) => name)).toEqual(['stays']);
  });

  it('keeps its list whole whatever the order of leaving', async () => {
    vi.useFakeTimers();
    const ticker = new FirstBeatTicker();
    const log: Array<[string, number, number]> = [];
    const waiters = Array.from({ length: 6 }, (_, i) => waiter(log, `w${i}`));
    for (const w of waiters) ticker.add(w, 1_000);
    // Middle, head, tail, then a re-add (moves to the end with its new due time).
    ticker.delete(waiters[2] as FirstBeatWaiter);
    ticker.delete(waiters[0] as FirstBeatWaiter);
    ticker.delete(waiters[5] as FirstBeatWaiter);
    ticker.add(waiters[1] as FirstBeatWaiter, 1_500);
    expect(ticker.size).toBe(3);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(log.map(([name, ms]) => [name, ms])).toEqual([
      ['w3', 0],
      ['w4', 0],
      ['w1', 500],
    ]);
    expect(ticker.size).toBe(0);
    // A waiter handed over can wait again, and one called back may re-add itself.
    const again = new Waiter(() => {
      if (log.length < 4) {
        log.push(['again', 0, 0]);
        ticker.add(again, 100);
      }
    });
    ticker.add(again, 100);
    await vi.advanceTimersByTimeAsync(100);
    expect(ticker.size).toBe(1);
    ticker.delete(again);
    expect(ticker.size).toBe(0);
    expect(keepsAlive(ticker)).toBe(false);
  });

  it('keeps the process alive only while a lease waits', async () => {
    vi.useFakeTimers();
    const ticker = new FirstBeatTicker();
    const log: Array<[string, number, number]> = [];
    const a = waiter(log, 'a');
    const b = waiter(log, 'b');
    ticker.add(a, 10_000);
    expect(keepsAlive(ticker)).toBe(true);
    ticker.add(b, 20_000);
    ticker.delete(a);
    expect(keepsAlive(ticker)).toBe(true);
    ticker.delete(b);
    // Left armed for its time, but unref'd: it no longer holds the process.
    expect(keepsAlive(ticker)).toBe(false);
    expect(vi.getTimerCount()).toBe(1);
    ticker.add(a, 15_000);
    expect(keepsAlive(ticker)).toBe(true);
    ticker.delete(a);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(log).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('re-arms under the timers in use when they were swapped (fake timers in tests)', async () => {
    const ticker = new FirstBeatTicker();
    const log: Array<[string, number, number]> = [];
    // Armed under the real timers, for a minute of real time, and left armed (unref'd).
    const gone = waiter(log, 'gone');
    const realFiresAt = performance.now() + 60_000;
    ticker.add(gone, 60_000);
    ticker.delete(gone);
    vi.useFakeTimers();
    // Due after the real timer on the numbers, but that timer will not fire in fake time.
    const delay = Math.ceil(realFiresAt) + 1_000;
    ticker.add(waiter(log, 'fake'), delay);
    await vi.advanceTimersByTimeAsync(delay);
    expect(log.map(([name, ms]) => [name, ms])).toEqual([['fake', 0]]);

    // And back: a timer of the fake implementation (here due at fake time 1 ms, which the
    // real clock passed long ago) is not trusted under the real one.
    ticker.add(gone, 1);
    ticker.delete(gone);
    vi.useRealTimers();
    const done = deferred<number>();
    ticker.add(new Waiter((ms) => done.resolve(ms)), 1);
    await expect(done.promise).resolves.toBeLessThanOrEqual(1);
  });
});

describe('heartbeats of leases on the system clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A store on the (fake) system clock and a long operation the test ends by hand. */
  function longRun(
    store: ReturnType<typeof createMemoryStore>,
    key: string,
    options: { lease?: string; heartbeat?: string } = {},
  ) {
    const gate = deferred<string>();
    let ctx: IdempotencyContext | undefined;
    const run = executeIdempotent(
      { operation: 'report', key },
      (c) => {
        ctx = c;
        return gate.promise;
      },
      { store, lease: '30s', ...options },
    );
    return { gate, run, signal: () => ctx?.signal };
  }

  it('a lease that starts mid-wait beats a full interval after its own start', async () => {
    vi.useFakeTimers();
    const store = createMemoryStore();
    const beats = vi.spyOn(store, 'heartbeat');
    // Quick operations arm the shared timer and leave.
    for (let i = 0; i < 200; i++) {
      await executeIdempotent({ operation: 'quick', key: `q${i}` }, async () => i, {
        store,
        lease: '30s',
      });
      await vi.advanceTimersByTimeAsync(20);
    }
    expect(firstBeats.size).toBe(0);
    // 4 s into the shared wait: its timer fires at 10 s, this lease's first beat is due at 14 s.
    const long = longRun(store, 'long');
    await vi.advanceTimersByTimeAsync(9_999);
    expect(beats).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(beats).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(beats).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(beats).toHaveBeenCalledTimes(2);
    expect(long.signal()?.aborted).toBe(false);
    long.gate.resolve('done');
    await expect(long.run).resolves.toMatchObject({ value: 'done', replayed: false });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a lease with a short interval beats on time while a longer one waits', async () => {
    vi.useFakeTimers();
    const store = createMemoryStore();
    const beats = vi.spyOn(store, 'heartbeat');
    const slow = longRun(store, 'slow');
    await vi.advanceTimersByTimeAsync(500);
    const fast = longRun(store, 'fast', { heartbeat: '1s' });
    await vi.advanceTimersByTimeAsync(999);
    expect(beats).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(beats).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(8_500);
    // fast: 1.5 s, 2.5 s, ... 9.5 s (9 beats); slow: 10 s.
    expect(beats.mock.calls.filter(([key]) => key === beats.mock.calls[0]?.[0])).toHaveLength(9);
    expect(beats).toHaveBeenCalledTimes(10);
    fast.gate.resolve('f');
    slow.gate.resolve('s');
    await Promise.all([fast.run, slow.run]);
    expect(slow.signal()?.aborted).toBe(false);
    expect(fast.signal()?.aborted).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('many leases started at different times each beat at their own interval', async () => {
    vi.useFakeTimers();
    const store = createMemoryStore();
    const firstBeatAt = new Map<string, number>();
    const started = new Map<string, number>();
    const heartbeat = store.heartbeat.bind(store);
    store.heartbeat = (key, token, leaseMs) => {
      if (!firstBeatAt.has(key)) firstBeatAt.set(key, Date.now());
      return heartbeat(key, token, leaseMs);
    };
    const runs: Array<ReturnType<typeof longRun>> = [];
    for (let i = 0; i < 40; i++) {
      const run = longRun(store, `k${i}`);
      await vi.advanceTimersByTimeAsync(0);
      started.set(
        (await store.list({ status: 'in_progress', limit: 1000 })).records.find(
          (r) => !started.has(r.key),
        )?.key as string,
        Date.now(),
      );
      runs.push(run);
      // Every fifth one ends at once, before its beat.
      if (i % 5 === 0) run.gate.resolve('quick');
      await vi.advanceTimersByTimeAsync(337);
    }
    await vi.advanceTimersByTimeAsync(30_000);
    for (const [key, at] of started) {
      const ended = (await store.get(key))?.status === 'completed';
      if (ended) {
        expect(firstBeatAt.has(key)).toBe(false);
      } else {
        expect(firstBeatAt.get(key)).toBe(at + 10_000);
      }
    }
    for (const run of runs) run.gate.resolve('done');
    await Promise.all(runs.map((r) => r.run));
    expect(runs.every((r) => r.signal()?.aborted === false)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a lease handed its own timer and then stopped beats no more', async () => {
    vi.useFakeTimers();
    const store = createMemoryStore();
    const beats = vi.spyOn(store, 'heartbeat');
    const first = longRun(store, 'first');
    await vi.advanceTimersByTimeAsync(5_000);
    const second = longRun(store, 'second');
    await vi.advanceTimersByTimeAsync(5_000);
    // The shared timer fired: first beat once, second holds a timer of its own for 5 s.
    expect(beats).toHaveBeenCalledTimes(1);
    second.gate.resolve('x');
    await second.run;
    await vi.advanceTimersByTimeAsync(6_000);
    expect(beats).toHaveBeenCalledTimes(1);
    first.gate.resolve('y');
    await first.run;
    expect(vi.getTimerCount()).toBe(0);
  });

  it('leases on another clock keep a timer of their own', async () => {
    const { clock, store } = setup();
    const gate = deferred<string>();
    const run = executeIdempotent({ operation: 'report', key: 'k' }, () => gate.promise, {
      store,
      clock,
    });
    await settle();
    expect(clock.pending).toBe(1);
    expect(firstBeats.size).toBe(0);
    gate.resolve('ok');
    await run;
    expect(clock.pending).toBe(0);
  });

  it('on the real clock: quick operations leave nothing that holds the process, a long one keeps beating', async () => {
    const store = createMemoryStore();
    for (let i = 0; i < 300; i++) {
      await executeIdempotent({ operation: 'quick', key: `q${i}` }, async () => i, { store });
    }
    expect(firstBeats.size).toBe(0);
    expect(keepsAlive(firstBeats)).toBe(false);

    let beats = 0;
    const threeBeats = deferred<void>();
    const heartbeat = store.heartbeat.bind(store);
    store.heartbeat = (key, token, leaseMs) => {
      if (++beats === 3) threeBeats.resolve();
      return heartbeat(key, token, leaseMs);
    };
    let signal: AbortSignal | undefined;
    const run = executeIdempotent(
      { operation: 'long', key: 'l' },
      async (ctx) => {
        signal = ctx.signal;
        expect(keepsAlive(firstBeats)).toBe(true);
        await threeBeats.promise;
        return 'done';
      },
      { store, lease: '3s', heartbeat: '50ms' },
    );
    await expect(run).resolves.toMatchObject({ value: 'done', replayed: false });
    expect(signal?.aborted).toBe(false);
    expect(keepsAlive(firstBeats)).toBe(false);
  });

  it('on the real clock: a process that ran operations exits without waiting for a beat', async () => {
    const script = fileURLToPath(new URL('./fixtures/quick-operations.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    // The script reports how long it stayed alive after its last operation; the first beat
    // of the default lease would come 10 s after it started.
    const lingered = Number(/lingered (\d+)/.exec(out)?.[1]);
    expect(lingered).toBeLessThan(5_000);
  }, 60_000);
});
