import { describe, expect, it, vi } from 'vitest';
import { ErrorCode, InvalidArgumentError, LeaseLostError } from '../../src/errors.js';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import { deriveKey, hashKey } from '../../src/idempotency/hash.js';
import type { IdempotencyContext, OperationIdentity } from '../../src/idempotency/types.js';
import { deferred, settle, setup, transientError } from './fixtures.js';

const identity: OperationIdentity = { operation: 'order', key: 'k1', fingerprintOf: { sku: 'a' } };
const storedKey = hashKey({ operation: 'order', key: 'k1' });

describe('steps', () => {
  it('a retry after a retryable failure resumes after the last completed step', async () => {
    const { clock, store } = setup();
    const charge = vi.fn(async () => ({ chargeId: 'ch_1', at: new Date(7) }));
    const ship = vi.fn(async () => 'shipment_1');
    let failWrite = true;
    const fn = async (ctx: IdempotencyContext) => {
      const payment = await ctx.step('charge', charge);
      if (failWrite) {
        failWrite = false;
        throw transientError('order write timed out');
      }
      const shipment = await ctx.step('ship', ship);
      return { payment, shipment, attempt: ctx.attempt, resumed: ctx.resumed };
    };

    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toThrow(
      'order write timed out',
    );
    expect((await store.get(storedKey))?.steps).toHaveProperty('charge');

    const outcome = await executeIdempotent(identity, fn, { store, clock });
    expect(outcome.value).toEqual({
      payment: { chargeId: 'ch_1', at: new Date(7) },
      shipment: 'shipment_1',
      attempt: 2,
      resumed: true,
    });
    expect(outcome.value.payment.at).toBeInstanceOf(Date);
    expect(charge).toHaveBeenCalledTimes(1);
    expect(ship).toHaveBeenCalledTimes(1);
  });

  it('a retry later than the ttl after the first attempt, but within a ttl of its failure, resumes its steps', async () => {
    // The release of the failed attempt keeps the record a whole ttl from then: without it,
    // the record would have expired at 60 s and the retry at 63 s would charge again.
    const { clock, store } = setup();
    const identity = { operation: 'order', key: 'late-retry', fingerprintOf: { sku: 'a' } };
    const charge = vi.fn(async () => 'ch_1');
    const options = { store, clock, ttl: '1m', lease: '10s' } as const;
    const first = executeIdempotent(
      identity,
      async (ctx) => {
        await ctx.step('charge', charge);
        await new Promise<void>((resolve) => clock.setTimer(5_000, resolve));
        throw transientError('order write timed out');
      },
      options,
    );
    const firstFailed = expect(first).rejects.toThrow('timed out');
    await clock.advance(5_000);
    await firstFailed;
    await clock.advance(58_000);
    const second = await executeIdempotent(
      identity,
      (ctx: IdempotencyContext) => ctx.step('charge', charge),
      options,
    );
    expect(second.value).toBe('ch_1');
    expect(charge).toHaveBeenCalledTimes(1);
  });

  it('a step tried again in the same run replays the nested steps its first try saved', async () => {
    const { clock, store } = setup();
    let charges = 0;
    let orderTries = 0;
    const outcome = await executeIdempotent(
      { operation: 'order', key: 'in-run-retry' },
      async (ctx) => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await ctx.step('order', async () => {
              orderTries++;
              const charge = await ctx.step('charge', async () => `ch_${++charges}`);
              if (orderTries === 1) throw transientError('order write timed out');
              return { charge };
            });
          } catch (error) {
            if (attempt >= 3) throw error;
          }
        }
      },
      { store, clock },
    );
    expect(outcome.value).toEqual({ charge: 'ch_1' });
    expect(orderTries).toBe(2);
    expect(charges).toBe(1);
    expect((await store.get(outcome.key))?.status).toBe('completed');
  });

  it('a nested step still running keeps its name when its enclosing step fails: a retry of that step does not run it twice', async () => {
    const { clock, store } = setup();
    let charges = 0;
    const gate = deferred();
    const outcome = executeIdempotent(
      { operation: 'order', key: 'nested-running' },
      async (ctx) => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await ctx.step('order', async () => {
              const [charge] = await Promise.all([
                ctx.step('charge', async () => {
                  charges++;
                  await gate.promise;
                  return `ch_${charges}`;
                }),
                attempt === 1
                  ? ctx.step('validate', async () => {
                      throw transientError('validate timed out');
                    })
                  : Promise.resolve('ok'),
              ]);
              return { charge };
            });
          } catch (error) {
            if (attempt >= 3) throw error;
          }
        }
      },
      { store, clock },
    ).catch((e: unknown) => e);
    await settle();
    // The first charge still runs while the order step is tried again: not a second one.
    expect(charges).toBe(1);
    gate.resolve();
    await outcome;
    expect(charges).toBe(1);
  });

  it('a step started after its run settled does not run its work: a sibling of a failed Promise.all branch', async () => {
    const { clock, store } = setup();
    const id = { operation: 'pay', key: 'straggler' };
    let charges = 0;
    const charge = async () => `ch_${++charges}`;
    const gate = deferred();
    let siblingSignal: AbortSignal | undefined;
    let siblingError: unknown;
    const first = executeIdempotent(
      id,
      async (ctx) => {
        await Promise.all([
          ctx.step('validate', async () => {
            throw transientError('upstream timeout');
          }),
          (async () => {
            await gate.promise;
            siblingSignal = ctx.signal;
            return ctx.step('charge', charge).catch((error: unknown) => {
              siblingError = error;
            });
          })(),
        ]);
        return 'done';
      },
      { store, clock },
    );
    await expect(first).rejects.toThrow('upstream timeout');
    // The retry holds the operation and charges.
    const retry = await executeIdempotent(id, (ctx) => ctx.step('charge', charge), {
      store,
      clock,
    });
    expect(retry.value).toBe('ch_1');
    // The first attempt's sibling reaches its step only now: it must not charge again.
    gate.resolve();
    await settle();
    expect(charges).toBe(1);
    expect(siblingSignal?.aborted).toBe(true);
    expect(siblingError).toBeInstanceOf(LeaseLostError);
  });

  it('a step started after its run completed does not run either; the signal of a completed run stays as it was', async () => {
    const { clock, store } = setup();
    let late: (() => Promise<unknown>) | undefined;
    let signal: AbortSignal | undefined;
    let ran = false;
    await executeIdempotent(
      { operation: 'pay', key: 'after-done' },
      async (ctx) => {
        signal = ctx.signal;
        late = () =>
          ctx.step('late', async () => {
            ran = true;
          });
        return 'done';
      },
      { store, clock },
    );
    await expect(late?.()).rejects.toBeInstanceOf(LeaseLostError);
    expect(ran).toBe(false);
    expect(signal?.aborted).toBe(false);
  });

  it('steps named like Object members (constructor, toString) run once and resume like any other', async () => {
    const { clock, store } = setup();
    const ctor = vi.fn(async () => 'c');
    const str = vi.fn(async () => 's');
    let failWrite = true;
    const fn = async (ctx: IdempotencyContext) => {
      const a = await ctx.step('constructor', ctor);
      const b = await ctx.step('toString', str);
      if (failWrite) {
        failWrite = false;
        throw transientError('order write timed out');
      }
      return [a, b];
    };
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toThrow('timed out');
    const outcome = await executeIdempotent(identity, fn, { store, clock });
    expect(outcome.value).toEqual(['c', 's']);
    expect(ctor).toHaveBeenCalledTimes(1);
    expect(str).toHaveBeenCalledTimes(1);
    const steps = (await store.get(storedKey))?.steps ?? {};
    expect(Object.keys(steps).sort()).toEqual(['constructor', 'toString']);
  });

  it('a step whose work threw is not stored, and runs again on the next attempt', async () => {
    const { clock, store } = setup();
    let calls = 0;
    const charge = vi.fn(async () => {
      calls++;
      if (calls === 1) throw transientError('psp reset');
      return `ch_${calls}`;
    });
    const fn = async (ctx: IdempotencyContext) => ctx.step('charge', charge);
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toThrow('psp reset');
    const record = await store.get(storedKey);
    expect(record).toMatchObject({ status: 'in_progress', leaseUntil: 0 });
    expect(record?.steps).toEqual({});
    const outcome = await executeIdempotent(identity, fn, { store, clock });
    expect(outcome.value).toBe('ch_2');
    expect(charge).toHaveBeenCalledTimes(2);
    expect((await store.get(storedKey))?.steps).toEqual({ charge: '"ch_2"' });
  });

  it('a takeover after a crash resumes with the steps of the crashed worker', async () => {
    const { clock, store } = setup();
    const charge = vi.fn(async () => 'ch_1');
    const options = { store, clock, lease: '10s', heartbeat: false };

    // Worker A charges, then hangs forever (a crash after the effect).
    void executeIdempotent(
      identity,
      async (ctx) => {
        await ctx.step('charge', charge);
        return new Promise<never>(() => {});
      },
      options,
    );
    await settle();
    expect(charge).toHaveBeenCalledTimes(1);

    await clock.advance(10_000);
    const outcome = await executeIdempotent(
      identity,
      async (ctx) => ({ charge: await ctx.step('charge', charge), resumed: ctx.resumed }),
      options,
    );
    expect(outcome.value).toEqual({ charge: 'ch_1', resumed: true });
    expect(charge).toHaveBeenCalledTimes(1);
  });

  it('refuses a step name used twice in one run', async () => {
    const { clock, store } = setup();
    const work = vi.fn(async () => 1);
    const run = executeIdempotent(
      identity,
      async (ctx) => {
        await ctx.step('charge', work);
        await ctx.step('charge', work);
      },
      { store, clock, rememberFailures: false },
    );
    await expect(run).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(run).rejects.toThrow(/step "charge" was already used in this run/);
    expect(work).toHaveBeenCalledTimes(1);
  });

  it('frees the name of a step whose work threw, so the run can try it again', async () => {
    const { clock, store } = setup();
    let tries = 0;
    const outcome = await executeIdempotent(
      identity,
      async (ctx) => {
        try {
          await ctx.step('flaky', async () => {
            tries++;
            throw new Error('once');
          });
        } catch {
          // try again below
        }
        return ctx.step('flaky', async () => ++tries);
      },
      { store, clock },
    );
    expect(outcome.value).toBe(2);
  });

  it('rejects bad step names', async () => {
    const { clock, store } = setup();
    // A lone surrogate would be stored as U+FFFD under another name, and run again.
    const names: unknown[] = ['', 'x'.repeat(201), 'a\nb', 42, 'charge-\ud83d', '\udc00'];
    for (const name of names) {
      const run = executeIdempotent(
        { ...identity, key: `bad-${String(name).length}-${typeof name}` },
        async (ctx) => ctx.step(name as string, async () => 1),
        { store, clock, rememberFailures: false },
      );
      await expect(run).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    const ok = await executeIdempotent(
      { ...identity, key: 'long-ok' },
      async (ctx) => ctx.step('x'.repeat(200), async () => 1),
      { store, clock },
    );
    expect(ok.value).toBe(1);
    // 200 characters counted as characters: 200 emoji (400 UTF-16 units) are a valid name.
    const emoji = await executeIdempotent(
      { ...identity, key: 'emoji-ok' },
      async (ctx) => ctx.step('😀'.repeat(200), async () => 2),
      { store, clock },
    );
    expect(emoji.value).toBe(2);
    await expect(
      executeIdempotent(
        { ...identity, key: 'emoji-long' },
        async (ctx) => ctx.step('😀'.repeat(201), async () => 3),
        { store, clock, rememberFailures: false },
      ),
    ).rejects.toThrow('at most 200 characters, got 201');
  });

  it('runs and replays steps named like Object.prototype members (constructor, toString...)', async () => {
    const { clock, store } = setup();
    const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];
    const work = vi.fn(async () => 'done');
    let failFirst = true;
    const fn = async (ctx: IdempotencyContext) => {
      const results: string[] = [];
      for (const name of names) results.push(await ctx.step(name, work));
      if (failFirst) {
        failFirst = false;
        throw transientError();
      }
      return results;
    };
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toMatchObject({
      code: 'ECONNRESET',
    });
    expect(Object.keys((await store.get(storedKey))?.steps ?? {}).sort()).toEqual(
      [...names].sort(),
    );
    const outcome = await executeIdempotent(identity, fn, { store, clock });
    expect(outcome.value).toEqual(names.map(() => 'done'));
    expect(work).toHaveBeenCalledTimes(names.length);
  });

  it('refuses the step name __proto__, which stores cannot all read back as a member', async () => {
    const { clock, store } = setup();
    const work = vi.fn(async () => 1);
    const run = executeIdempotent(identity, async (ctx) => ctx.step('__proto__', work), {
      store,
      clock,
      rememberFailures: false,
    });
    await expect(run).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(run).rejects.toThrow(/__proto__/);
    expect(work).not.toHaveBeenCalled();
  });

  it('a step result the codec refuses fails the operation with RESULT_NOT_STORABLE, remembered', async () => {
    const { clock, store } = setup();
    const effect = vi.fn(async () => new Map([['f', () => 1]]));
    const fn = async (ctx: IdempotencyContext) => {
      await ctx.step('bad', effect);
      return 'unreachable';
    };
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toMatchObject({
      code: ErrorCode.RESULT_NOT_STORABLE,
    });
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toMatchObject({
      code: ErrorCode.RESULT_NOT_STORABLE,
      replayed: true,
    });
    expect(effect).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['rememberFailures: false', { rememberFailures: false }],
    ['a predicate that does not match', { rememberFailures: () => false }],
    ['a classifier that retries everything', { classify: () => true }],
  ])(
    'an unstorable step result is recorded as failed even with %s (the effect is not repeated)',
    async (_, extra) => {
      const { clock, store } = setup();
      const effect = vi.fn(async () => ({ receipt: 'r_1', print: () => 'not data' }));
      const fn = async (ctx: IdempotencyContext) => {
        await ctx.step('charge', effect);
        return 'unreachable';
      };
      const options = { store, clock, ...extra };
      await expect(executeIdempotent(identity, fn, options)).rejects.toMatchObject({
        code: ErrorCode.RESULT_NOT_STORABLE,
      });
      expect((await store.get(storedKey))?.status).toBe('failed');
      await expect(executeIdempotent(identity, fn, options)).rejects.toMatchObject({
        code: ErrorCode.RESULT_NOT_STORABLE,
        replayed: true,
      });
      expect(effect).toHaveBeenCalledTimes(1);
    },
  );

  it('an unstorable step stays recorded as failed when fn catches it and fails otherwise', async () => {
    const { clock, store } = setup();
    const effect = vi.fn(async () => 'y'.repeat(50));
    const fn = async (ctx: IdempotencyContext) => {
      try {
        await ctx.step('charge', effect);
      } catch {
        // the caller's code goes on and then hits a transient error
      }
      throw transientError('later write timed out');
    };
    const options = { store, clock, maxResultBytes: 40 };
    await expect(executeIdempotent(identity, fn, options)).rejects.toThrow('later write timed out');
    await expect(executeIdempotent(identity, fn, options)).rejects.toMatchObject({
      code: ErrorCode.RESULT_TOO_LARGE,
      replayed: true,
    });
    expect(effect).toHaveBeenCalledTimes(1);
  });

  it('a step result over maxResultBytes is RESULT_TOO_LARGE', async () => {
    const { clock, store } = setup();
    await expect(
      executeIdempotent(identity, async (ctx) => ctx.step('big', async () => 'y'.repeat(50)), {
        store,
        clock,
        maxResultBytes: 40,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.RESULT_TOO_LARGE });
  });

  it('a step past maxSteps, counted across attempts, throws before its work runs', async () => {
    const { clock, store } = setup();
    const works: string[] = [];
    let attempt = 0;
    const fn = async (ctx: IdempotencyContext) => {
      attempt++;
      await ctx.step('a', async () => works.push('a'));
      await ctx.step('b', async () => works.push('b'));
      if (attempt === 1) throw transientError('after two steps');
      // Resumed: a and b come back stored, c is the third step, over the bound.
      await ctx.step('c', async () => works.push('c'));
      return 'unreachable';
    };
    const options = { store, clock, maxSteps: 2 };
    await expect(executeIdempotent(identity, fn, options)).rejects.toThrow('after two steps');
    const error = await executeIdempotent(identity, fn, options).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCode.RESULT_TOO_LARGE });
    expect(String((error as Error).message)).toContain('maxSteps is 2');
    expect(works).toEqual(['a', 'b']);
    expect(Object.keys((await store.get(storedKey))?.steps ?? {})).toEqual(['a', 'b']);
  });

  it('steps running at once count against maxSteps before their work runs', async () => {
    const { clock, store } = setup();
    const works: string[] = [];
    const fn = async (ctx: IdempotencyContext) =>
      (
        await Promise.allSettled(
          ['a', 'b', 'c'].map((name) => ctx.step(name, async () => works.push(name))),
        )
      ).map((r) => (r.status === 'fulfilled' ? 'ran' : (r.reason as { code: string }).code));
    const outcome = await executeIdempotent(identity, fn, { store, clock, maxSteps: 2 });
    expect(works).toEqual(['a', 'b']);
    expect(outcome.value).toEqual(['ran', 'ran', ErrorCode.RESULT_TOO_LARGE]);
  });

  it('a step whose work threw does not count against maxSteps', async () => {
    const { clock, store } = setup();
    let failures = 0;
    const fn = async (ctx: IdempotencyContext) => {
      for (let i = 0; i < 3; i++) {
        await ctx
          .step('flaky', async () => {
            failures++;
            throw new Error('not yet');
          })
          .catch(() => undefined);
      }
      return ctx.step('only', async () => 'done');
    };
    const outcome = await executeIdempotent(identity, fn, { store, clock, maxSteps: 1 });
    expect(outcome.value).toBe('done');
    expect(failures).toBe(3);
  });

  it('steps that together pass maxStepsBytes end the operation recorded as failed', async () => {
    const { clock, store } = setup();
    const effects: string[] = [];
    let attempt = 0;
    const fn = async (ctx: IdempotencyContext) => {
      attempt++;
      // 'é' is two UTF-8 bytes: 20 characters, 42 bytes encoded with the quotes.
      await ctx.step('one', async () => effects.push('one') && 'é'.repeat(20));
      if (attempt === 1) throw transientError('resume later');
      await ctx.step('two', async () => effects.push('two') && 'é'.repeat(20));
      return 'unreachable';
    };
    const options = { store, clock, maxStepsBytes: 83 };
    await expect(executeIdempotent(identity, fn, options)).rejects.toThrow('resume later');
    const error = await executeIdempotent(identity, fn, options).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCode.RESULT_TOO_LARGE });
    expect(String((error as Error).message)).toContain('already take 42, over maxStepsBytes (83)');
    expect((await store.get(storedKey))?.status).toBe('failed');
    // The second step's work ran once; the record replays its failure instead of running it again.
    await expect(executeIdempotent(identity, fn, options)).rejects.toMatchObject({
      code: ErrorCode.RESULT_TOO_LARGE,
      replayed: true,
    });
    expect(effects).toEqual(['one', 'two']);
  });

  it('steps saved at once count each other against maxStepsBytes', async () => {
    const { clock, store } = setup();
    const fn = async (ctx: IdempotencyContext) =>
      Promise.all([
        ctx.step('a', async () => 'x'.repeat(600)),
        ctx.step('b', async () => 'y'.repeat(600)),
      ]);
    const options = { store, clock, maxStepsBytes: 1000 };
    await expect(executeIdempotent(identity, fn, options)).rejects.toMatchObject({
      code: ErrorCode.RESULT_TOO_LARGE,
    });
    const record = await store.get(storedKey);
    expect(record?.status).toBe('failed');
    expect(Object.keys(record?.steps ?? {})).toHaveLength(1);
  });

  it('steps exactly at maxStepsBytes are stored', async () => {
    const { clock, store } = setup();
    const fn = async (ctx: IdempotencyContext) => {
      await ctx.step('one', async () => 'é'.repeat(20));
      return ctx.step('two', async () => 'é'.repeat(20));
    };
    const outcome = await executeIdempotent(identity, fn, { store, clock, maxStepsBytes: 84 });
    expect(outcome.value).toBe('é'.repeat(20));
  });

  it('maxSteps and maxStepsBytes default to 1000 and 16 x maxResultBytes, and are checked', async () => {
    const { clock, store } = setup();
    const fn = async (ctx: IdempotencyContext) => {
      for (let i = 0; i < 1000; i++) await ctx.step(`s${i}`, async () => i);
      return ctx.step('s1000', async () => 'one too many');
    };
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toMatchObject({
      code: ErrorCode.RESULT_TOO_LARGE,
      message: expect.stringContaining('maxSteps is 1000'),
    });
    const big = await executeIdempotent(
      { ...identity, key: 'k-big' },
      async (ctx) => {
        for (let i = 0; i < 16; i++) await ctx.step(`s${i}`, async () => 'x'.repeat(98));
        return ctx.step('s16', async () => 'x');
      },
      { store, clock, maxResultBytes: 100 },
    ).catch((e: unknown) => e);
    expect(big).toMatchObject({
      code: ErrorCode.RESULT_TOO_LARGE,
      message: expect.stringContaining('over maxStepsBytes (1600)'),
    });
    for (const bad of [0, -1, 1.5, Number.NaN, '10']) {
      await expect(
        executeIdempotent(identity, async () => 1, { store, clock, maxSteps: bad as number }),
      ).rejects.toThrow(InvalidArgumentError);
      await expect(
        executeIdempotent(identity, async () => 1, { store, clock, maxStepsBytes: bad as number }),
      ).rejects.toThrow(InvalidArgumentError);
    }
  });

  it('keyFor is stable across attempts and distinct per name and per operation', async () => {
    const { clock, store } = setup();
    const seen: string[] = [];
    let first = true;
    const fn = async (ctx: IdempotencyContext) => {
      seen.push(ctx.keyFor('psp'));
      if (first) {
        first = false;
        throw transientError();
      }
      return [ctx.keyFor('psp'), ctx.keyFor('email')];
    };
    await expect(executeIdempotent(identity, fn, { store, clock })).rejects.toThrow();
    const outcome = await executeIdempotent(identity, fn, { store, clock });
    expect(seen[0]).toBe(seen[1]);
    expect(outcome.value[0]).toBe(seen[0]);
    expect(outcome.value[0]).toBe(deriveKey(storedKey, 'psp'));
    expect(outcome.value[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(outcome.value[1]).not.toBe(outcome.value[0]);

    const other = await executeIdempotent(
      { ...identity, key: 'k2' },
      async (ctx) => ctx.keyFor('psp'),
      {
        store,
        clock,
      },
    );
    expect(other.value).not.toBe(outcome.value[0]);
    await expect(
      executeIdempotent({ ...identity, key: 'k3' }, async (ctx) => ctx.keyFor(''), {
        store,
        clock,
        rememberFailures: false,
      }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('keyFor is distinct per principal and the same for the worker that takes over', async () => {
    const { clock, store } = setup();
    const options = { store, clock, lease: '10s', heartbeat: false };
    const of = (principal?: string) =>
      executeIdempotent(
        { operation: 'order', key: 'shared', ...(principal ? { principal } : {}) },
        async (ctx) => ctx.keyFor('psp'),
        options,
      );
    const keys = [(await of('tenant-a')).value, (await of('tenant-b')).value, (await of()).value];
    expect(new Set(keys).size).toBe(3);

    // A crashed worker and the one that takes over derive the same downstream key.
    let crashed: string | undefined;
    void executeIdempotent(
      identity,
      async (ctx) => {
        crashed = ctx.keyFor('psp');
        return new Promise<never>(() => {});
      },
      options,
    );
    await settle();
    await clock.advance(10_000);
    const takeover = await executeIdempotent(
      identity,
      async (ctx) => ({ key: ctx.keyFor('psp'), resumed: ctx.resumed }),
      options,
    );
    expect(takeover.value).toEqual({ key: crashed, resumed: true });
  });

  it('a step never starts its work once the lease ended on the worker clock, before any timer says so', async () => {
    const { clock, store } = setup();
    const work = vi.fn(async () => 'charged');
    const gate = deferred();
    const a = executeIdempotent(
      identity,
      async (ctx) => {
        await gate.promise;
        return ctx.step('charge', work);
      },
      { store, clock, lease: '10s' },
    );
    await settle();
    // The event loop stalls past the lease: the clock moves, no timer has fired yet.
    clock.set(clock.now() + 10_001);
    gate.resolve();
    await expect(a).rejects.toBeInstanceOf(LeaseLostError);
    expect(work).not.toHaveBeenCalled();
  });

  it('a stale worker cannot save a step: LeaseLostError and its signal aborts', async () => {
    const { clock, store } = setup();
    const options = { store, clock, lease: '10s', heartbeat: false };
    const gate = deferred();
    const second = vi.fn(async () => 'from A');
    let signal: AbortSignal | undefined;
    const a = executeIdempotent(
      identity,
      async (ctx) => {
        signal = ctx.signal;
        await ctx.step('first', async () => 'a1');
        await gate.promise;
        return ctx.step('second', second);
      },
      options,
    );
    await settle();
    await clock.advance(10_000);
    // B takes over and finishes the operation.
    const b = await executeIdempotent(
      identity,
      async (ctx) =>
        `${await ctx.step('first', async () => 'b1')}+${await ctx.step('second', async () => 'b2')}`,
      options,
    );
    expect(b.value).toBe('a1+b2');

    gate.resolve();
    await expect(a).rejects.toBeInstanceOf(LeaseLostError);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(LeaseLostError);
    const record = await store.get(storedKey);
    expect(record?.result).toBe('"a1+b2"');
    expect(record?.steps.second).toBe('"b2"');
  });
});
