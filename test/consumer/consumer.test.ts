import { unhandledDuring } from '../helpers/unhandled.js';
import { describe, expect, it } from 'vitest';
import { type ConsumerOptions, createConsumer } from '../../src/consumer/consumer.js';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import { type MemoryBody, createMemorySource } from '../../src/consumer/memory-source.js';
import type { ConsumerMessage } from '../../src/consumer/message-processor.js';
import { redrive } from '../../src/consumer/redrive.js';
import type { Delivery, MessageSource } from '../../src/consumer/types.js';
import { NonRetryableError, isReprocessError } from '../../src/errors.js';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import { seededRandom } from '../../src/random.js';
import { computeDelay } from '../../src/retry/compute-delay.js';
import { profiles } from '../../src/retry/profiles.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { refusingQuarantine } from './fixtures/refusing-quarantine.js';

type Handler = ConsumerOptions['handler'];

function world(options: { ackTimeout?: number } = {}) {
  const clock = new FakeClock();
  const source = createMemorySource({
    name: 'orders',
    clock,
    ...(options.ackTimeout === undefined ? {} : { ackTimeout: options.ackTimeout }),
  });
  const store = createMemoryStore({ clock });
  const events: ConsumerEvent[] = [];
  const of = <T extends ConsumerEvent['type']>(type: T) =>
    events.filter((e): e is Extract<ConsumerEvent, { type: T }> => e.type === type);
  function consumer(handler: Handler, overrides: Partial<ConsumerOptions> = {}) {
    return createConsumer({
      source,
      handler,
      idempotency: { store, lease: '10s' },
      clock,
      random: seededRandom(42),
      onEvent: (e) => events.push(e),
      ...overrides,
    });
  }
  function publish(key: string | undefined, body: MemoryBody = { amount: 5 }, id?: string) {
    return source.publish({
      body,
      headers: key === undefined ? {} : { 'idempotency-key': key },
      ...(id === undefined ? {} : { id }),
    });
  }
  return { clock, source, store, events, of, consumer, publish };
}

const reset = (n = 1) => Object.assign(new Error(`reset ${n}`), { code: 'ECONNRESET' });

describe('createConsumer outcomes', () => {
  it('acks a success and gives the handler the parsed message', async () => {
    const w = world();
    const seen: ConsumerMessage[] = [];
    const c = w.consumer(async (m, ctx) => {
      seen.push(m);
      expect(ctx.attempt).toBe(1);
      return { ok: true };
    });
    await c.start();
    const id = w.publish('k1', { amount: 5 });
    await w.clock.advance(0);
    expect(seen).toHaveLength(1);
    const m = seen[0] as ConsumerMessage;
    expect(m).toMatchObject({
      body: { amount: 5 },
      id,
      source: 'orders',
      deliveryCount: 1,
      attempt: 1,
      headers: { 'idempotency-key': 'k1' },
    });
    expect(new TextDecoder().decode(m.raw)).toBe('{"amount":5}');
    expect(w.of('acked')).toMatchObject([{ id, key: 'k1', replayed: false }]);
    expect(w.source.isIdle()).toBe(true);
    expect(c.stats()).toMatchObject({ acked: 1, retried: 0, quarantined: 0 });
  });

  it('acks a duplicate of a completed operation without running the handler again', async () => {
    const w = world();
    let runs = 0;
    const c = w.consumer(async () => {
      runs += 1;
      return runs;
    });
    await c.start();
    w.publish('k1');
    w.publish('k1');
    await w.clock.advance(0);
    expect(runs).toBe(1);
    expect(w.of('acked').map((e) => e.replayed)).toEqual([false, true]);
  });

  it('acks a duplicate under onDuplicate: reject too', async () => {
    const w = world();
    let runs = 0;
    const c = w.consumer(
      async () => {
        runs += 1;
      },
      { idempotency: { store: w.store, onDuplicate: 'reject' } },
    );
    await c.start();
    w.publish('k1');
    w.publish('k1');
    await w.clock.advance(0);
    expect(runs).toBe(1);
    expect(w.of('acked').map((e) => e.replayed)).toEqual([false, true]);
  });

  it('sends a message back after the lease hint when its operation runs elsewhere', async () => {
    const w = world();
    let release: () => void = () => undefined;
    const elsewhere = executeIdempotent(
      { operation: 'orders', key: 'k1' },
      () => new Promise<string>((resolve) => (release = () => resolve('done'))),
      { store: w.store, lease: '10s', clock: w.clock },
    );
    await w.clock.advance(2_000);
    let runs = 0;
    const c = w.consumer(
      async () => {
        runs += 1;
      },
      { idempotency: { store: w.store, fingerprint: false } },
    );
    await c.start();
    w.publish('k1');
    await w.clock.advance(0);
    const [retry] = w.of('retry_scheduled');
    expect(retry?.reason).toBe('in_progress');
    // The holder's lease (10 s from t = 0, no heartbeat yet at 2 s) has 8 s left.
    expect(retry?.delayMs).toBe(8_000);
    expect(runs).toBe(0);
    release();
    await elsewhere;
    await w.clock.advance(retry?.delayMs ?? 0);
    expect(runs).toBe(0);
    expect(w.of('acked')).toMatchObject([{ replayed: true }]);
  });

  it('retries a retryable failure after the async profile backoff', async () => {
    const w = world();
    let runs = 0;
    const c = w.consumer(async () => {
      runs += 1;
      if (runs === 1) throw reset();
    });
    await c.start();
    w.publish('k1');
    await w.clock.advance(0);
    const [retry] = w.of('retry_scheduled');
    const expected = computeDelay(profiles.async, 0, seededRandom(42));
    expect(retry).toMatchObject({ reason: 'failure', attempt: 1, delayMs: expected });
    expect(expected).toBeGreaterThanOrEqual(1000);
    await w.clock.advance(expected - 1);
    expect(runs).toBe(1);
    await w.clock.advance(1);
    expect(runs).toBe(2);
    expect(w.of('acked')).toHaveLength(1);
  });

  it('uses a Retry-After hint from the error, capped by the policy cap', async () => {
    const w = world();
    const c = w.consumer(
      async () => {
        throw Object.assign(new Error('slow down'), { status: 429, retryAfter: 120 });
      },
      { retry: { cap: '1m' } },
    );
    await c.start();
    w.publish('k1');
    await w.clock.advance(0);
    expect(w.of('retry_scheduled')[0]?.delayMs).toBe(60_000);
  });

  it('quarantines a NonRetryableError, a classifier veto and a 4xx on their first failure', async () => {
    const w = world();
    const errors: Record<string, unknown> = {
      a: new NonRetryableError('card declined', { code: 'CARD_DECLINED' }),
      b: Object.assign(new Error('vetoed'), { code: 'E_VETO' }),
      c: Object.assign(new Error('bad request'), { status: 400 }),
    };
    const c = w.consumer(
      async (m) => {
        throw errors[m.headers['idempotency-key'] as string];
      },
      {
        retry: {
          classify: (e) => ((e as { code?: string }).code === 'E_VETO' ? false : undefined),
        },
      },
    );
    await c.start();
    for (const key of ['a', 'b', 'c']) w.publish(key);
    await w.clock.advance(0);
    const histories = w.of('quarantined').map((e) => e.history);
    expect(histories.map((h) => [h.idempotencyKey, h.reason, h.attempts])).toEqual([
      ['a', 'non_retryable', 1],
      ['b', 'non_retryable', 1],
      ['c', 'non_retryable', 1],
    ]);
    expect(w.of('retry_scheduled')).toEqual([]);
  });

  it('retries an unknown error by default, and quarantines it with unknownErrors: quarantine', async () => {
    const w = world();
    const c = w.consumer(
      async () => {
        throw new TypeError('x is undefined');
      },
      { quarantine: { unknownErrors: 'quarantine' } },
    );
    await c.start();
    w.publish('k1');
    await w.clock.advance(0);
    expect(w.of('quarantined')[0]?.history).toMatchObject({
      reason: 'non_retryable',
      lastError: { name: 'TypeError', message: 'x is undefined' },
    });

    const v = world();
    const d = v.consumer(async () => {
      throw new TypeError('x is undefined');
    });
    await d.start();
    v.publish('k1');
    await v.clock.advance(0);
    expect(v.of('retry_scheduled')).toHaveLength(1);
  });

  it('quarantines after maxAttempts counted from the delivery count, with the history', async () => {
    const w = world();
    const failures: number[] = [];
    const c = w.consumer(
      async () => {
        failures.push(w.clock.now());
        throw reset(failures.length);
      },
      { retry: { maxAttempts: 3, base: '1s', jitter: 'none' } },
    );
    await c.start();
    const publishedAt = w.clock.now();
    w.publish('k1', { amount: 1 }, 'm1');
    await w.clock.advance(10_000);
    expect(failures).toEqual([publishedAt, publishedAt + 1000, publishedAt + 3000]);
    const [q] = await w.source.deadLetters.list();
    expect(q?.history).toEqual({
      attempts: 3,
      firstFailureAt: publishedAt,
      lastFailureAt: publishedAt + 3000,
      lastError: { name: 'Error', code: 'ECONNRESET', message: 'reset 3' },
      reason: 'attempts_exhausted',
      source: 'orders',
      idempotencyKey: 'k1',
      quarantinedAt: publishedAt + 3000,
    });
    expect(q?.headers).toEqual({ 'idempotency-key': 'k1' });
    expect(new TextDecoder().decode(q?.body)).toBe('{"amount":1}');
    expect(w.source.deliveries('m1').map((r) => r.settlement)).toEqual([
      'retry',
      'retry',
      'quarantine',
    ]);
  });

  it('counts attempts from the idempotency record when the broker has no delivery count', async () => {
    const w = world();
    const attempts: number[] = [];
    const c = w.consumer(
      async (m) => {
        attempts.push(m.attempt);
        throw reset();
      },
      { source: withoutDeliveryCount(w.source), retry: { maxAttempts: 3, jitter: 'none' } },
    );
    await c.start();
    w.publish('k1');
    await w.clock.advance(60_000);
    expect(attempts).toEqual([1, 2, 3]);
    expect(w.of('quarantined')[0]?.history).toMatchObject({
      attempts: 3,
      reason: 'attempts_exhausted',
    });
  });

  it('keeps the record attempt count across a consumer crash', async () => {
    const w = world();
    const attempts: number[] = [];
    const crashed = w.consumer(
      async (m) => {
        attempts.push(m.attempt);
        await new Promise(() => undefined);
      },
      {
        source: withoutDeliveryCount(w.source),
        idempotency: { store: w.store, lease: '1s', heartbeat: false },
      },
    );
    await crashed.start();
    w.publish('k1');
    await w.clock.advance(0);
    w.source.crash();
    const survivor = w.consumer(
      async (m) => {
        attempts.push(m.attempt);
      },
      { source: withoutDeliveryCount(w.source), idempotency: { store: w.store, lease: '1s' } },
    );
    await survivor.start();
    await w.clock.advance(5_000);
    expect(attempts).toEqual([1, 2]);
    expect(w.of('retry_scheduled').map((e) => e.reason)).toContain('in_progress');
    expect(w.of('acked')).toHaveLength(1);
  });

  it('never runs the handler unguarded while the store is down, and never acks', async () => {
    const w = world();
    let down = true;
    const flaky = storeWithOutage(w.store, () => down);
    let runs = 0;
    const c = w.consumer(
      async () => {
        runs += 1;
      },
      { idempotency: { store: flaky }, retry: { jitter: 'none', base: '2s' } },
    );
    await c.start();
    w.publish('k1', {}, 'm1');
    await w.clock.advance(0);
    expect(runs).toBe(0);
    const [retry] = w.of('retry_scheduled');
    expect(retry).toMatchObject({ reason: 'store_unavailable', delayMs: 2000 });
    expect(isReprocessError(retry?.error, 'STORE_UNAVAILABLE')).toBe(true);
    expect(w.of('acked')).toEqual([]);
    down = false;
    await w.clock.advance(2000);
    expect(runs).toBe(1);
    expect(w.source.deliveries('m1').map((r) => r.settlement)).toEqual(['retry', 'ack']);
  });

  it('falls back to retryLater when the dead-letter destination refuses a quarantine', async () => {
    const w = world();
    const c = w.consumer(
      async () => {
        throw new NonRetryableError('no');
      },
      { source: refusingQuarantine(w.source, 1), retry: { jitter: 'none', base: '1s' } },
    );
    await c.start();
    w.publish('k1', {}, 'm1');
    await w.clock.advance(0);
    expect(w.of('settle_failed')).toMatchObject([{ action: 'quarantine' }]);
    expect(w.source.deliveries('m1')[0]?.settlement).toBe('retry');
    await w.clock.advance(1000);
    expect(w.of('quarantined')).toHaveLength(1);
    expect(await w.source.deadLetters.list()).toHaveLength(1);
  });

  it('keeps working when an onEvent listener throws', async () => {
    const w = world();
    const c = w.consumer(async () => undefined, {
      onEvent: () => {
        throw new Error('listener bug');
      },
    });
    await c.start();
    w.publish('k1');
    await w.clock.advance(0);
    expect(w.source.stats().acked).toBe(1);
  });

  it('keeps working when an async onEvent listener rejects, with no unhandled rejection', async () => {
    const w = world();
    const c = w.consumer(async () => undefined, {
      onEvent: async () => {
        throw new Error('exporter down');
      },
    });
    const unhandled = await unhandledDuring(async () => {
      await c.start();
      w.publish('k1');
      await w.clock.advance(0);
    });
    expect(w.source.stats().acked).toBe(1);
    expect(unhandled).toEqual([]);
  });
});

describe('createConsumer bad input', () => {
  it('quarantines invalid JSON as poison with a clear reason and goes on', async () => {
    const w = world();
    const seen: string[] = [];
    const c = w.consumer(async (m) => {
      seen.push(m.id);
    });
    await c.start();
    w.source.publish({ body: '{"a":', headers: { 'idempotency-key': 'bad' }, id: 'bad' });
    w.publish('good', {}, 'good');
    await w.clock.advance(0);
    expect(seen).toEqual(['good']);
    const [q] = w.of('quarantined');
    expect(q?.history).toMatchObject({
      reason: 'poison',
      idempotencyKey: 'bad',
      attempts: 1,
      lastError: { name: 'NonRetryableError', code: 'POISON_MESSAGE' },
    });
    expect(q?.history.lastError.message).toMatch(
      /^message bad from orders is poison: the body is not valid JSON/,
    );
  });

  it('quarantines a body the validator refuses, and one over maxBodyBytes', async () => {
    const w = world();
    let runs = 0;
    const c = w.consumer(
      async () => {
        runs += 1;
      },
      {
        validate: (body) => {
          const amount = (body as { amount?: unknown }).amount;
          if (typeof amount !== 'number') throw new TypeError('amount must be a number');
          return body;
        },
        maxBodyBytes: 100,
      },
    );
    await c.start();
    w.publish('a', { amount: 'ten' });
    w.publish('b', { amount: 1, pad: 'x'.repeat(200) });
    w.publish('c', { amount: 1 });
    await w.clock.advance(0);
    expect(runs).toBe(1);
    const messages = w.of('quarantined').map((e) => e.history.lastError.message);
    expect(messages[0]).toMatch(/poison: amount must be a number/);
    expect(messages[1]).toMatch(/poison: the body is \d+ bytes, over maxBodyBytes \(100\)/);
  });

  it('quarantines as poison a message its principal or fingerprint function throws on, and goes on', async () => {
    const w = world();
    const tenants: string[] = [];
    const c = w.consumer(
      async (m) => {
        tenants.push((m.body as { tenant: string }).tenant);
      },
      {
        idempotency: {
          store: w.store,
          lease: '10s',
          principal: (m) => (m.body as { tenant: string }).tenant,
          fingerprint: (m) => {
            if ((m.body as { tenant: string }).tenant === 'unreadable') {
              throw new TypeError('no amount to fingerprint');
            }
            return m.body;
          },
        },
      },
    );
    await c.start();
    w.publish('no-tenant', null, 'no-tenant');
    w.publish('unreadable', { tenant: 'unreadable' }, 'unreadable');
    w.publish('fine', { tenant: 't1' }, 'fine');
    await w.clock.advance(0);
    expect(tenants).toEqual(['t1']);
    const histories = w.of('quarantined').map((e) => e.history);
    expect(histories).toHaveLength(2);
    expect(histories[0]).toMatchObject({
      reason: 'poison',
      idempotencyKey: 'no-tenant',
      lastError: { code: 'POISON_MESSAGE' },
    });
    expect(histories[0]?.lastError.message).toMatch(
      /^message no-tenant from orders is poison: the principal function threw: /,
    );
    expect(histories[1]?.lastError.message).toMatch(
      /poison: the fingerprint function threw: .*no amount to fingerprint/,
    );
    expect(w.of('released')).toHaveLength(0);
    await c.stop();
  });

  it('bounds the name, code and message of the error in the history it quarantines with', async () => {
    const w = world();
    const c = w.consumer(
      async () => {
        throw Object.assign(new NonRetryableError('m'.repeat(5000)), {
          name: 'N'.repeat(300_000),
          code: 'C'.repeat(300_000),
        });
      },
      { quarantine: { maxErrorMessageLength: 100 } },
    );
    await c.start();
    w.publish('huge-error');
    await w.clock.advance(0);
    const [q] = w.of('quarantined');
    expect(q?.history.lastError.name.length).toBe(256);
    expect(q?.history.lastError.code?.length).toBe(256);
    expect(q?.history.lastError.message.length).toBe(100);
    await c.stop();
  });

  it('reads the key from a body path, and quarantines a missing or invalid key', async () => {
    const w = world();
    const keys: string[] = [];
    const c = w.consumer(
      async (m) => {
        keys.push((m.body as { orderId: string }).orderId);
      },
      { key: 'body.orderId' },
    );
    await c.start();
    w.publish(undefined, { orderId: 'o-1' });
    w.publish(undefined, { other: 1 }, 'nokey');
    w.publish(undefined, { orderId: 'x'.repeat(300) }, 'longkey');
    await w.clock.advance(0);
    expect(keys).toEqual(['o-1']);
    const [missing, invalid] = w.of('quarantined').map((e) => e.history);
    expect(missing).toMatchObject({
      reason: 'key_missing',
      lastError: { code: 'IDEMPOTENCY_KEY_MISSING' },
    });
    expect(missing?.lastError.message).toMatch(/message nokey .* \(looked at body\.orderId\)/);
    expect(invalid).toMatchObject({
      reason: 'poison',
      lastError: { code: 'IDEMPOTENCY_KEY_INVALID' },
    });
  });

  it('falls back from the idempotency-key header to the message id by default', async () => {
    const w = world();
    const c = w.consumer(async () => undefined);
    await c.start();
    w.publish(undefined, {}, 'msg-7');
    await w.clock.advance(0);
    expect(w.of('acked')[0]?.key).toBe('msg-7');
  });

  it('quarantines a redelivery with another body under the same key (fingerprint)', async () => {
    const w = world();
    const c = w.consumer(async () => 'ok');
    await c.start();
    w.publish('k1', { amount: 1 });
    w.publish('k1', { amount: 2 });
    await w.clock.advance(0);
    expect(w.of('quarantined')[0]?.history).toMatchObject({
      reason: 'non_retryable',
      lastError: { code: 'IDEMPOTENCY_KEY_REUSE' },
    });
  });

  it('rejects bad options with typed errors naming the field', () => {
    const w = world();
    const ok = async () => undefined;
    const bad: Array<[Partial<ConsumerOptions>, RegExp]> = [
      [{ handler: undefined as unknown as Handler }, /handler must be a function/],
      [{ key: 'orderId' }, /key path "orderId" names nothing/],
      [{ parse: 'yaml' as 'json' }, /parse must be/],
      [{ concurrency: 0 }, /concurrency must be an integer >= 1/],
      [{ concurrency: 4, prefetch: 2 }, /prefetch must be an integer >= concurrency \(4\)/],
      [{ maxMessageAgeMs: -1 }, /maxMessageAgeMs/],
      [{ retry: { maxAttempts: 0 } }, /maxAttempts/],
      [{ quarantine: { unknownErrors: 'drop' as 'retry' } }, /unknownErrors/],
      [{ idempotency: { store: {} as IdempotencyStore } }, /not an IdempotencyStore/],
      [{ touchIntervalMs: -5 }, /touchIntervalMs/],
      [
        { concurency: 4 } as Partial<ConsumerOptions>,
        /createConsumer: unknown option "concurency"/,
      ],
      [
        { idempotency: { store: createMemoryStore(), ttll: '1h' } as never },
        /consumer idempotency: unknown option "ttll"/,
      ],
      [
        { quarantine: { unknownError: 'quarantine' } as never },
        /consumer quarantine: unknown option "unknownError"/,
      ],
    ];
    for (const [options, message] of bad) {
      expect(() => w.consumer(ok, options), String(message)).toThrow(message);
      try {
        w.consumer(ok, options);
      } catch (error) {
        expect(isReprocessError(error, 'INVALID_ARGUMENT')).toBe(true);
      }
    }
  });
});

describe('createConsumer maximum message age', () => {
  it('quarantines a message already too old without running it', async () => {
    const w = world();
    let runs = 0;
    w.publish('k1', {}, 'old');
    await w.clock.advance(120_000);
    const c = w.consumer(
      async () => {
        runs += 1;
      },
      { maxMessageAgeMs: 60_000 },
    );
    await c.start();
    await w.clock.advance(0);
    expect(runs).toBe(0);
    expect(w.of('quarantined')[0]?.history).toMatchObject({
      reason: 'max_age',
      lastError: { code: 'MESSAGE_TOO_OLD' },
    });
  });

  it('quarantines a failing message whose next retry would pass the maximum age', async () => {
    const w = world();
    const c = w.consumer(
      async () => {
        throw reset();
      },
      { maxMessageAgeMs: 5_000, retry: { base: '2s', jitter: 'none', maxAttempts: 10 } },
    );
    await c.start();
    w.publish('k1');
    await w.clock.advance(30_000);
    // Failures at 0 and 2 s; the retry after that would come at 6 s, past 5 s.
    expect(w.of('retry_scheduled').map((e) => e.delayMs)).toEqual([2000]);
    expect(w.of('quarantined')[0]?.history).toMatchObject({
      reason: 'max_age',
      attempts: 2,
      lastError: { code: 'ECONNRESET' },
    });
  });
});

describe('createConsumer concurrency, backpressure, heartbeat', () => {
  it('runs at most concurrency handlers and holds at most prefetch deliveries', async () => {
    const w = world();
    let running = 0;
    let maxRunning = 0;
    const c = w.consumer(
      async () => {
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        await new Promise<void>((resolve) => w.clock.setTimer(100, resolve));
        running -= 1;
      },
      { concurrency: 3, prefetch: 5 },
    );
    for (let i = 0; i < 40; i++) w.publish(`k${i}`);
    await c.start();
    await w.clock.advance(0);
    expect(w.source.stats()).toMatchObject({ unsettled: 5, ready: 35 });
    expect(c.stats()).toMatchObject({ running: 3, waiting: 2 });
    await w.clock.advance(2_000);
    expect(w.source.stats()).toMatchObject({ acked: 40, maxUnsettled: 5 });
    expect(maxRunning).toBe(3);
  });

  it('touches held deliveries so a slow handler keeps them past the ack timeout', async () => {
    const w = world({ ackTimeout: 3_000 });
    const c = w.consumer(
      async () => {
        await new Promise<void>((resolve) => w.clock.setTimer(10_000, resolve));
      },
      { touchIntervalMs: 1_000 },
    );
    await c.start();
    w.publish('k1', {}, 'm1');
    await w.clock.advance(12_000);
    expect(w.source.deliveries('m1')).toHaveLength(1);
    expect(w.source.stats()).toMatchObject({ acked: 1, lost: 0 });
    expect(w.source.stats().touched).toBeGreaterThanOrEqual(9);
  });

  it('without touching, the broker redelivers it and the lease answers in-progress', async () => {
    const w = world({ ackTimeout: 3_000 });
    let runs = 0;
    const c = w.consumer(
      async () => {
        runs += 1;
        await new Promise<void>((resolve) => w.clock.setTimer(10_000, resolve));
      },
      { touchIntervalMs: 0, concurrency: 2, prefetch: 2 },
    );
    await c.start();
    w.publish('k1', {}, 'm1');
    await w.clock.advance(4_000);
    // The redelivery found the operation held: the handler heartbeats its lease.
    expect(runs).toBe(1);
    expect(w.of('retry_scheduled')[0]?.reason).toBe('in_progress');
  });
});

describe('createConsumer shutdown', () => {
  it('finishes in-flight work, gives back what did not start, acks nothing unfinished', async () => {
    const w = world();
    const done: string[] = [];
    const c = w.consumer(
      async (m) => {
        await new Promise<void>((resolve) => w.clock.setTimer(1_000, resolve));
        done.push(m.id);
      },
      { concurrency: 2, prefetch: 4 },
    );
    for (const id of ['a', 'b', 'c', 'd']) w.publish(id, {}, id);
    await c.start();
    await w.clock.advance(0);
    const stopping = c.stop({ timeoutMs: 5_000 });
    await w.clock.advance(1_000);
    expect(await stopping).toEqual({ finished: 2, released: 2, settling: 0 });
    expect(done).toEqual(['a', 'b']);
    expect(w.source.deliveries().map((r) => [r.id, r.settlement])).toEqual([
      ['a', 'ack'],
      ['b', 'ack'],
      ['c', 'release'],
      ['d', 'release'],
    ]);
    expect(w.of('released').map((e) => [e.id, e.started])).toEqual([
      ['c', false],
      ['d', false],
    ]);
    expect(c.state).toBe('stopped');
    expect(w.source.stats().ready).toBe(2);
  });

  it('gives back a handler past the bound, aborts its signal and never settles it', async () => {
    const w = world();
    let aborted: unknown;
    const c = w.consumer(async (m) => {
      await new Promise<void>((resolve) => {
        m.signal.addEventListener('abort', () => {
          aborted = m.signal.reason;
          resolve(); // finishes "successfully" after the bound: must not be acked
        });
      });
    });
    await c.start();
    w.publish('k1', {}, 'm1');
    await w.clock.advance(0);
    const stopping = c.stop({ timeoutMs: 2_000 });
    await w.clock.advance(2_000);
    expect(await stopping).toEqual({ finished: 0, released: 1, settling: 0 });
    await w.clock.advance(0);
    expect(isReprocessError(aborted, 'ABORTED')).toBe(true);
    expect(w.source.deliveries('m1').map((r) => r.settlement)).toEqual(['release']);
    expect(w.source.stats().acked).toBe(0);
    // Not even tried: an ack after a release is a channel error on some brokers.
    expect(w.of('settle_failed')).toEqual([]);
    // Its operation did complete, so the redelivery replays instead of running again.
    const next = w.consumer(async () => {
      throw new Error('must not run');
    });
    await next.start();
    await w.clock.advance(0);
    expect(w.of('acked')).toMatchObject([{ id: 'm1', replayed: true }]);
  });

  it('is idempotent and refuses to start twice', async () => {
    const w = world();
    const c = w.consumer(async () => undefined);
    await c.start();
    await expect(c.start()).rejects.toThrow(/already running/);
    const first = c.stop();
    expect(c.stop()).toBe(first);
    expect(await first).toEqual({ finished: 0, released: 0, settling: 0 });
    await expect(c.stop({ timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
  });
});

describe('redrive through the consumer', () => {
  it('replays a completed operation instead of running it again', async () => {
    const w = world();
    let failing = true;
    let effects = 0;
    const c = w.consumer(async () => {
      if (failing) throw new NonRetryableError('closed');
      effects += 1;
    });
    await c.start();
    w.publish('k1', { n: 1 }, 'first');
    await w.clock.advance(0);
    failing = false;
    w.publish('k1', { n: 1 }, 'second');
    await w.clock.advance(0);
    expect(effects).toBe(1);
    expect(await redrive(w.source.deadLetters, { errorCode: 'NON_RETRYABLE' })).toBe(1);
    await w.clock.advance(0);
    expect(effects).toBe(1);
    expect(w.of('acked').map((e) => [e.id, e.replayed])).toEqual([
      ['second', false],
      ['first', true],
    ]);
  });
});

/** The source as a broker without a delivery count (the runtime then uses the record's). */
function withoutDeliveryCount(source: MessageSource): MessageSource {
  return {
    name: source.name,
    start: (onDelivery, options) =>
      source.start(
        (d) =>
          onDelivery(Object.assign(Object.create(d) as Delivery, { deliveryCount: undefined })),
        options,
      ),
    stop: () => source.stop(),
    close: () => source.close(),
  };
}

/** A store that throws while `down()` says so. */
function storeWithOutage(store: IdempotencyStore, down: () => boolean): IdempotencyStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (down()) return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
        return value.apply(target, args);
      };
    },
  });
}
