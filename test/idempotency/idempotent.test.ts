import { describe, expect, it, vi } from 'vitest';
import {
  ErrorCode,
  IdempotencyKeyInvalidError,
  IdempotencyKeyMissingError,
  IdempotencyKeyReuseError,
  InvalidArgumentError,
} from '../../src/errors.js';
import { fingerprintOf, hashKey } from '../../src/idempotency/hash.js';
import { idempotent } from '../../src/idempotency/idempotent.js';
import type { IdempotencyOptions } from '../../src/idempotency/types.js';
import { setup } from './fixtures.js';

interface Charge {
  requestId?: unknown;
  tenant?: string;
  body?: { id?: string; amount: number; note?: string };
}

describe('idempotent()', () => {
  it('keeps the signature: the call gives the value, .run gives the outcome', async () => {
    const { clock, store } = setup();
    const inner = vi.fn(async (input: Charge) => ({ charged: input.body?.amount }));
    const charge = idempotent(inner, { store, clock, key: 'requestId', scope: 'charge' });
    const input = { requestId: 'r1', body: { amount: 5 } };

    expect(await charge(input)).toEqual({ charged: 5 });
    const outcome = await charge.run(input);
    expect(outcome).toEqual({
      value: { charged: 5 },
      replayed: true,
      key: hashKey({ operation: 'charge', key: 'r1' }),
    });
    expect(inner).toHaveBeenCalledTimes(1);
    expect(inner).toHaveBeenCalledWith(input, expect.objectContaining({ attempt: 1 }));
  });

  it('refuses an async fingerprint selector at the call: its promise would match every payload', async () => {
    const { store } = setup();
    const charge = idempotent(async (req: { id: string; amount: number }) => req.amount, {
      store,
      key: 'id',
      scope: 'charge',
      fingerprint: (async (req: { amount: number }) => req.amount) as never,
    });
    await expect(charge({ id: 'a', amount: 10 })).rejects.toThrow(/cannot fingerprint a promise/);
  });

  it('beats the default heartbeat only when the lease leaves room for one (a 1 ms lease has none)', async () => {
    const { clock, store } = setup();
    const beats = vi.spyOn(store, 'heartbeat');
    let lost: boolean | undefined;
    const tiny = idempotent(
      async (_input: { id: string }, ctx) => {
        await clock.advance(5);
        lost = ctx.signal.aborted;
        return 'done';
      },
      { store, clock, key: 'id', scope: 'tiny', lease: 1 },
    );
    // With a heartbeat as long as the lease, the first beat came after the lease and the run
    // was presumed lost with no beat sent; now it runs unwatched, as with heartbeat: false.
    await expect(tiny({ id: 'a' })).resolves.toBe('done');
    expect(lost).toBe(false);
    expect(beats).not.toHaveBeenCalled();
  });

  it('accepts a synchronous function', async () => {
    const { clock, store } = setup();
    const double = idempotent((n: { id: string; v: number }) => n.v * 2, {
      store,
      clock,
      key: 'id',
      scope: 'double',
    });
    expect(await double({ id: 'a', v: 21 })).toBe(42);
  });

  it('returns a named function for stack traces', () => {
    const { store } = setup();
    const wrapped = idempotent(async function createInvoice() {}, {
      store,
      key: 'id',
      scope: 'invoice',
    });
    expect(wrapped.name).toBe('idempotent createInvoice');
    expect(typeof wrapped.run).toBe('function');
  });

  it('reads the key from a nested field path or a function', async () => {
    const { clock, store } = setup();
    const byPath = idempotent(async (i: Charge) => i.body?.amount, {
      store,
      clock,
      key: 'body.id',
      scope: 'nested',
    });
    const outcome = await byPath.run({ body: { id: 'b-1', amount: 1 } });
    expect(outcome.key).toBe(hashKey({ operation: 'nested', key: 'b-1' }));

    const byFn = idempotent(async (i: Charge) => i.body?.amount, {
      store,
      clock,
      key: (i) => `${i.tenant}:${i.body?.id}`,
      scope: 'fn',
    });
    const fnOutcome = await byFn.run({ tenant: 't', body: { id: 'x', amount: 1 } });
    expect(fnOutcome.key).toBe(hashKey({ operation: 'fn', key: 't:x' }));
  });

  it('throws IdempotencyKeyMissingError (400) when the key is absent and required', async () => {
    const { clock, store } = setup();
    const inner = vi.fn(async () => 1);
    const f = idempotent(inner, { store, clock, key: 'requestId', scope: 's' });
    const missing = f({} as Charge);
    await expect(missing).rejects.toBeInstanceOf(IdempotencyKeyMissingError);
    await expect(missing).rejects.toMatchObject({ status: 400 });
    await expect(missing).rejects.toThrow(/"requestId"/);
    await expect(f({ requestId: null })).rejects.toBeInstanceOf(IdempotencyKeyMissingError);
    expect(inner).not.toHaveBeenCalled();
  });

  it('rejects invalid keys with IdempotencyKeyInvalidError and never runs fn', async () => {
    const { clock, store } = setup();
    const inner = vi.fn(async () => 1);
    const f = idempotent(inner, { store, clock, key: 'requestId', scope: 's' });
    for (const bad of [
      '',
      'x'.repeat(256),
      42,
      { id: 1 },
      'line\nbreak',
      'nul\u0000',
      'del\u007f',
    ]) {
      const run = f({ requestId: bad });
      await expect(run).rejects.toBeInstanceOf(IdempotencyKeyInvalidError);
      await expect(run).rejects.toMatchObject({
        code: ErrorCode.IDEMPOTENCY_KEY_INVALID,
        status: 400,
      });
    }
    expect(inner).not.toHaveBeenCalled();
    expect(await f({ requestId: 'x'.repeat(255) })).toBe(1);
  });

  it('with required: false runs fn unguarded when the key is missing, visibly', async () => {
    const { clock, store } = setup();
    const inner = vi.fn(async (_: Charge, ctx) => ({
      step: await ctx.step('s', async () => 'ran'),
      derived: ctx.keyFor('psp'),
    }));
    const f = idempotent(inner, { store, clock, key: 'requestId', scope: 's', required: false });
    const a = await f.run({});
    const b = await f.run({});
    expect(a).toMatchObject({ value: { step: 'ran' }, replayed: false, key: '', unguarded: true });
    expect(a.value.derived).not.toBe(b.value.derived);
    expect(inner).toHaveBeenCalledTimes(2);
    expect((await store.list()).records).toHaveLength(0);
    // A present key is still guarded.
    await f({ requestId: 'r' });
    expect((await f.run({ requestId: 'r' })).replayed).toBe(true);
    // An invalid key is never treated as missing.
    await expect(f({ requestId: '' })).rejects.toBeInstanceOf(IdempotencyKeyInvalidError);
  });

  it('scopes by operation and principal: two tenants, one key, two operations', async () => {
    const { clock, store } = setup();
    const inner = vi.fn(async (i: Charge) => `invoice for ${i.tenant}`);
    const f = idempotent(inner, {
      store,
      clock,
      key: 'requestId',
      scope: { operation: 'invoice', principal: (i) => i.tenant },
    });
    expect(await f({ requestId: 'same', tenant: 'acme' })).toBe('invoice for acme');
    expect(await f({ requestId: 'same', tenant: 'globex' })).toBe('invoice for globex');
    expect((await f.run({ requestId: 'same', tenant: 'acme' })).replayed).toBe(true);
    expect(inner).toHaveBeenCalledTimes(2);
    const acme = await f.run({ requestId: 'same', tenant: 'acme' });
    expect(acme.key).toBe(hashKey({ operation: 'invoice', principal: 'acme', key: 'same' }));

    const other = idempotent(inner, { store, clock, key: 'requestId', scope: 'refund' });
    expect((await other.run({ requestId: 'same', tenant: 'acme' })).replayed).toBe(false);
  });

  it('fingerprints the whole input by default', async () => {
    const { clock, store } = setup();
    const f = idempotent(async (i: Charge) => i.body?.amount, {
      store,
      clock,
      key: 'requestId',
      scope: 'fp',
    });
    await f({ requestId: 'r', body: { amount: 1, note: 'a' } });
    // Key order does not matter.
    expect((await f.run({ body: { note: 'a', amount: 1 }, requestId: 'r' })).replayed).toBe(true);
    await expect(f({ requestId: 'r', body: { amount: 1, note: 'b' } })).rejects.toBeInstanceOf(
      IdempotencyKeyReuseError,
    );
    const record = (await store.list()).records[0];
    expect(record?.fingerprint).toBe(
      fingerprintOf({ requestId: 'r', body: { amount: 1, note: 'a' } }),
    );
  });

  it('fingerprints a path, several paths or a selector, and can skip the check', async () => {
    const { clock, store } = setup();
    const base = { store, clock, key: 'requestId' } as const;
    const run = (options: Partial<IdempotencyOptions<Charge>>, scope: string) =>
      idempotent(async (i: Charge) => i.body?.note, { ...base, ...options, scope });

    const byPath = run({ fingerprint: 'body.amount' }, 'path');
    await byPath({ requestId: 'r', body: { amount: 1, note: 'a' } });
    expect((await byPath.run({ requestId: 'r', body: { amount: 1, note: 'b' } })).value).toBe('a');
    await expect(byPath({ requestId: 'r', body: { amount: 2 } })).rejects.toBeInstanceOf(
      IdempotencyKeyReuseError,
    );

    const byPaths = run({ fingerprint: ['body.amount', 'tenant'] }, 'paths');
    await byPaths({ requestId: 'r', tenant: 't', body: { amount: 1, note: 'a' } });
    expect((await byPaths.run({ requestId: 'r', tenant: 't', body: { amount: 1 } })).replayed).toBe(
      true,
    );
    await expect(byPaths({ requestId: 'r', body: { amount: 1 } })).rejects.toBeInstanceOf(
      IdempotencyKeyReuseError,
    );

    const bySelector = run({ fingerprint: (i) => i.body?.amount }, 'selector');
    await bySelector({ requestId: 'r', body: { amount: 3 } });
    await expect(bySelector({ requestId: 'r', body: { amount: 4 } })).rejects.toBeInstanceOf(
      IdempotencyKeyReuseError,
    );

    const off = run({ fingerprint: false }, 'off');
    await off({ requestId: 'r', body: { amount: 1, note: 'first' } });
    expect((await off.run({ requestId: 'r', body: { amount: 9, note: 'x' } })).value).toBe('first');
  });

  it('a fingerprint path that selects nothing still guards against reuse', async () => {
    const { clock, store } = setup();
    const f = idempotent(async (i: Charge) => i.body?.amount, {
      store,
      clock,
      key: 'requestId',
      scope: 'missing-field',
      fingerprint: 'body.note',
    });
    await f({ requestId: 'r', body: { amount: 1 } });
    await expect(
      f({ requestId: 'r', body: { amount: 1, note: 'now set' } }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReuseError);
  });

  it('passes ttl, lease and the other options through to the state machine', async () => {
    const { clock, store } = setup();
    const f = idempotent(async () => 'r', {
      store,
      clock,
      key: 'id',
      scope: 's',
      ttl: '2h',
      onDuplicate: 'reject',
    });
    const first = await f.run({ id: 'a' });
    expect((await store.get(first.key))?.expiresAt).toBe(clock.now() + 7_200_000);
    await expect(f({ id: 'a' })).rejects.toMatchObject({ code: ErrorCode.DUPLICATE_REQUEST });
  });

  describe('bad options fail at wrap time', () => {
    const { store } = setup();
    const cases: [string, unknown, unknown, RegExp][] = [
      ['fn not a function', 'nope', { store, key: 'id', scope: 's' }, /needs a function/],
      ['no key', async () => 1, { store, scope: 's' }, /"key" is required/],
      ['an empty key path', async () => 1, { store, key: '', scope: 's' }, /field path/],
      [
        'a key path with an empty segment',
        async () => 1,
        { store, key: 'a..b', scope: 's' },
        /field path/,
      ],
      ['a numeric key source', async () => 1, { store, key: 7, scope: 's' }, /key must be/],
      ['no scope', async () => 1, { store, key: 'id' }, /"scope" is required/],
      ['an empty scope', async () => 1, { store, key: 'id', scope: '' }, /scope must not be/],
      [
        'a scope without operation',
        async () => 1,
        { store, key: 'id', scope: {} },
        /scope.operation/,
      ],
      [
        'a bad principal',
        async () => 1,
        { store, key: 'id', scope: { operation: 'o', principal: 3 } },
        /scope.principal/,
      ],
      [
        'a bad fingerprint',
        async () => 1,
        { store, key: 'id', scope: 's', fingerprint: 3 },
        /fingerprint must be/,
      ],
      [
        'empty fingerprint paths',
        async () => 1,
        { store, key: 'id', scope: 's', fingerprint: [] },
        /must not be empty/,
      ],
      [
        'a bad required',
        async () => 1,
        { store, key: 'id', scope: 's', required: 'no' },
        /required must be/,
      ],
      ['a bad lease', async () => 1, { store, key: 'id', scope: 's', lease: '3 weeks' }, /lease/],
      ['no store', async () => 1, { key: 'id', scope: 's' }, /store/],
      [
        'a misspelt option',
        async () => 1,
        { store, key: 'id', scope: 's', onDuplicte: 'reject' },
        /idempotent\(\): unknown option "onDuplicte"; the options are .*onDuplicate/,
      ],
    ];
    for (const [title, fn, options, message] of cases) {
      it(title, () => {
        const wrap = () =>
          idempotent(fn as () => Promise<number>, options as IdempotencyOptions<unknown>);
        expect(wrap).toThrow(InvalidArgumentError);
        expect(wrap).toThrow(message);
      });
    }

    it('a principal function returning a non-string is rejected at call time', async () => {
      const { clock, store: s } = setup();
      const f = idempotent(async () => 1, {
        store: s,
        clock,
        key: 'id',
        scope: { operation: 'o', principal: () => 42 as unknown as string },
      });
      await expect(f({ id: 'a' })).rejects.toThrow(/scope.principal\(input\) must return/);
    });
  });
});
