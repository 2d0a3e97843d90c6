import { describe, expect, it } from 'vitest';
import { type ConsumerOptions, createConsumer } from '../../src/consumer/consumer.js';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import { redrive } from '../../src/consumer/redrive.js';
import type { Delivery, MessageSource } from '../../src/consumer/types.js';
import { InvalidArgumentError, NonRetryableError } from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

/*
 * Edges of the consumer runtime found in review: thrown values of odd shapes, aggregates,
 * restarts with a handler still running, a dead-letter destination that refuses, a stop while
 * an ack is in flight, age without a publication time, and options of the wrong shape.
 */

type Handler = ConsumerOptions['handler'];

function world(wrap?: (source: MessageSource) => MessageSource) {
  const clock = new FakeClock();
  const memory = createMemorySource({ name: 'orders', clock });
  const source = wrap ? wrap(memory) : memory;
  const store = createMemoryStore({ clock });
  const events: ConsumerEvent[] = [];
  const consumer = (handler: Handler, overrides: Partial<ConsumerOptions> = {}) =>
    createConsumer({
      source,
      handler,
      idempotency: { store, lease: '10s' },
      clock,
      random: seededRandom(7),
      onEvent: (e) => events.push(e),
      ...overrides,
    });
  const publish = (key: string) =>
    memory.publish({ body: { amount: 5 }, headers: { 'idempotency-key': key } });
  const kinds = () =>
    events.map(
      (e) => `${e.type}:${'reason' in e ? e.reason : 'history' in e ? e.history.reason : ''}`,
    );
  return { clock, memory, store, events, consumer, publish, kinds };
}

/** A source whose deliveries are changed by `change` on their way to the consumer. */
function changing(change: (delivery: Delivery) => Delivery) {
  return (inner: MessageSource): MessageSource => ({
    name: inner.name,
    start: (onDelivery, options) => inner.start((d) => onDelivery(change(d)), options),
    stop: () => inner.stop(),
    close: () => inner.close(),
  });
}

describe('consumer: thrown values of any shape', () => {
  const odd: Array<[string, () => unknown]> = [
    ['a null-prototype object', () => Object.create(null)],
    [
      'an object whose toString throws',
      () => ({
        toString() {
          throw new Error('no');
        },
      }),
    ],
    [
      'an Error whose code getter throws',
      () =>
        Object.defineProperty(new Error('odd'), 'code', {
          get() {
            throw new Error('no code');
          },
        }),
    ],
  ];
  for (const [what, make] of odd) {
    it(`${what}: quarantined after its attempts, never looped`, async () => {
      const w = world();
      let calls = 0;
      const c = w.consumer(
        async () => {
          calls++;
          throw make();
        },
        { retry: { maxAttempts: 2, base: '1s', jitter: 'none' } },
      );
      await c.start();
      w.publish('k');
      await w.clock.runAll();
      expect(calls).toBe(2);
      expect(c.stats()).toMatchObject({ quarantined: 1, released: 0 });
      const quarantined = w.events.find((e) => e.type === 'quarantined');
      expect(quarantined).toMatchObject({ history: { reason: 'attempts_exhausted', attempts: 2 } });
      await c.stop({ timeoutMs: 0 });
    });
  }

  it('a parse function that throws such a value: poison, once', async () => {
    const w = world();
    let calls = 0;
    const c = w.consumer(
      async () => {
        calls++;
      },
      {
        parse: () => {
          throw Object.create(null);
        },
      },
    );
    await c.start();
    w.publish('k');
    await w.clock.runAll();
    expect(calls).toBe(0);
    expect(w.kinds()).toEqual(['quarantined:poison']);
    await c.stop({ timeoutMs: 0 });
  });
});

describe('consumer: aggregates are classified as retry() classifies them', () => {
  it('an AggregateError holding a NonRetryableError is quarantined at once', async () => {
    const w = world();
    const c = w.consumer(async () => {
      throw new AggregateError([new NonRetryableError('declined', { code: 'CARD_DECLINED' })]);
    });
    await c.start();
    w.publish('k');
    await w.clock.runAll();
    expect(w.kinds()).toEqual(['quarantined:non_retryable']);
    await c.stop({ timeoutMs: 0 });
  });

  it('an AggregateError holding a connection refusal is retried, even with unknownErrors: quarantine', async () => {
    const w = world();
    let calls = 0;
    const c = w.consumer(
      async () => {
        calls++;
        if (calls === 1) {
          throw new AggregateError([Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })]);
        }
      },
      { quarantine: { unknownErrors: 'quarantine' } },
    );
    await c.start();
    w.publish('k');
    await w.clock.runAll();
    expect(w.kinds()).toEqual(['retry_scheduled:failure', 'acked:']);
    await c.stop({ timeoutMs: 0 });
  });
});

describe('consumer: stop and start again', () => {
  it('a handler given up on at stop still counts against concurrency after a restart', async () => {
    const w = world();
    let active = 0;
    let most = 0;
    const gates: Array<() => void> = [];
    const c = w.consumer(
      async () => {
        active++;
        most = Math.max(most, active);
        await new Promise<void>((resolve) => gates.push(resolve));
        active--;
      },
      { concurrency: 1 },
    );
    await c.start();
    w.publish('a');
    await w.clock.advance(0);
    const stopped = c.stop({ timeoutMs: 100 });
    await w.clock.advance(100);
    expect(await stopped).toEqual({ finished: 0, released: 1, settling: 0 });
    await c.start();
    w.publish('b');
    await w.clock.advance(0);
    expect(active).toBe(1);
    // The abandoned handler ends: now the next one may run.
    gates.shift()?.();
    await w.clock.advance(0);
    await w.clock.advance(0);
    expect(most).toBe(1);
    expect(active).toBe(1);
    for (const open of gates.splice(0)) open();
    await w.clock.runAll();
    await c.stop({ timeoutMs: 0 });
  });

  it('a stop while an ack is in flight reports it as settling, not finished', async () => {
    let answerAck: () => void = () => undefined;
    const w = world(
      changing((d) => ({
        ...d,
        ack: () =>
          new Promise<void>((resolve) => {
            answerAck = () => void d.ack().then(resolve);
          }),
      })),
    );
    const c = w.consumer(async () => 'done');
    await c.start();
    w.publish('k');
    await w.clock.advance(0);
    const stopped = c.stop({ timeoutMs: 50 });
    await w.clock.advance(50);
    expect(await stopped).toEqual({ finished: 0, released: 0, settling: 1 });
    answerAck();
    await w.clock.advance(0);
    expect(c.stats()).toMatchObject({ acked: 1, running: 0 });
  });
});

describe('consumer: a dead-letter destination that refuses', () => {
  it('the message comes back later: a retry_scheduled event, counted as retried', async () => {
    const w = world(
      changing((d) => ({
        ...d,
        quarantine: () => Promise.reject(new Error('dead-letter queue unreachable')),
      })),
    );
    const c = w.consumer(
      async () => {
        throw new NonRetryableError('declined');
      },
      { retry: { base: '1s', jitter: 'none' } },
    );
    await c.start();
    w.publish('k');
    await w.clock.advance(0);
    await w.clock.advance(0);
    expect(w.kinds()).toEqual(['settle_failed:', 'retry_scheduled:quarantine_failed']);
    expect(c.stats()).toMatchObject({ retried: 1, settleFailures: 0, quarantined: 0 });
    await c.stop({ timeoutMs: 0 });
  });
});

describe('consumer: age without a publication time', () => {
  it('past maxMessageAgeMs from its first failure, it is quarantined without running again', async () => {
    const w = world(changing((d) => ({ ...d, publishedAt: undefined })));
    const runs: number[] = [];
    const options = {
      maxMessageAgeMs: 10_000,
      retry: { base: '1h', cap: '2h', jitter: 'none' as const },
    };
    const c = w.consumer(async () => {
      runs.push(w.clock.now());
      throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    }, options);
    await c.start();
    const started = w.clock.now();
    w.publish('k');
    await w.clock.advance(0);
    // The backoff (1 h) already passes the age: quarantined at the first failure as max_age.
    await w.clock.runAll();
    expect(runs).toEqual([started]);
    expect(w.kinds()).toEqual(['quarantined:max_age']);
    await c.stop({ timeoutMs: 0 });
  });

  it('the age counts from the recorded first failure, and a redriven message runs again', async () => {
    const w = world(changing((d) => ({ ...d, publishedAt: undefined })));
    const runs: number[] = [];
    let fixed = false;
    const c = w.consumer(
      async () => {
        runs.push(w.clock.now());
        if (!fixed) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
      },
      { maxMessageAgeMs: 2500, retry: { base: '1s', jitter: 'none' } },
    );
    await c.start();
    const started = w.clock.now();
    w.publish('k');
    await w.clock.runAll();
    // Fails at 0 and 1 s; the next retry (2 s later) would pass 2.5 s from the first failure.
    expect(runs.map((t) => t - started)).toEqual([0, 1000]);
    const quarantined = w.events.find((e) => e.type === 'quarantined');
    expect(quarantined).toMatchObject({
      history: { reason: 'max_age', firstFailureAt: started, lastFailureAt: started + 1000 },
    });
    fixed = true;
    expect(await redrive(w.memory.deadLetters)).toBe(1);
    await w.clock.runAll();
    expect(runs).toHaveLength(3);
    expect(w.kinds().at(-1)).toBe('acked:');
    await c.stop({ timeoutMs: 0 });
  });
});

describe('consumer: options of the wrong shape', () => {
  it('are refused with InvalidArgumentError naming the field', async () => {
    const w = world();
    const handler = async () => undefined;
    expect(() => w.consumer(handler, { quarantine: 'x' as never })).toThrow(InvalidArgumentError);
    for (const retry of [{ deadline: '1s' }, { attemptTimeout: '1s' }, { budget: {} }]) {
      expect(() => w.consumer(handler, { retry: retry as never })).toThrow(
        /does not apply to a consumer/,
      );
    }
    expect(() => createMemorySource({ name: 'a', clock: 5 as never })).toThrow(
      InvalidArgumentError,
    );
    const c = w.consumer(handler);
    await c.start();
    await expect(c.stop(null as never)).rejects.toThrow(InvalidArgumentError);
    await c.stop({ timeoutMs: 0 });
  });
});

describe('consumer: a settling call the broker refuses', () => {
  it('the delivery is given back after a first backoff, not held unacked for good', async () => {
    const w = world(
      changing((d) => ({
        ...d,
        retryLater: () => Promise.reject(new Error('no queue named "orders.delay.1s"')),
      })),
    );
    let calls = 0;
    const c = w.consumer(async () => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
      return 'done';
    });
    await c.start();
    w.publish('k');
    await w.clock.advance(0);
    expect(calls).toBe(1);
    expect(c.stats()).toMatchObject({ running: 1, settleFailures: 1 });
    await w.clock.runAll();
    // Given back (released), delivered again, and this time it succeeds.
    expect(calls).toBe(2);
    expect(c.stats()).toMatchObject({ acked: 1, released: 1, running: 0 });
    await c.stop({ timeoutMs: 0 });
  });

  it('a settle refused after stop began is given back at once: no timer outlives the stop', async () => {
    let refuse: () => void = () => undefined;
    const w = world(
      changing((d) => ({
        ...d,
        ack: () =>
          new Promise<void>((_resolve, reject) => {
            refuse = () => reject(new Error('channel closed'));
          }),
      })),
    );
    const c = w.consumer(async () => 'done', { retry: { base: '5s', jitter: 'none' } });
    await c.start();
    w.publish('k');
    await w.clock.advance(0);
    const stopped = c.stop({ timeoutMs: 10_000 });
    await w.clock.advance(0);
    refuse();
    await w.clock.advance(0);
    expect(await stopped).toEqual({ finished: 0, released: 1, settling: 0 });
    expect(w.clock.pending).toBe(0);
  });

  it('a stop gives such a delivery back at once, and counts it as released', async () => {
    const w = world(
      changing((d) => ({
        ...d,
        retryLater: () => Promise.reject(new Error('no queue named "orders.delay.1s"')),
      })),
    );
    const c = w.consumer(async () => {
      throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    });
    await c.start();
    w.publish('k');
    await w.clock.advance(0);
    const stopped = await c.stop({ timeoutMs: 1000 });
    expect(stopped).toEqual({ finished: 0, released: 1, settling: 0 });
  });
});
