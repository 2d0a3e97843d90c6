import { describe, expect, it } from 'vitest';
import { createMemoryDeadLetterQueue } from '../../src/consumer/memory-dead-letter-queue.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import { redrive } from '../../src/consumer/redrive.js';
import type { Delivery, QuarantineHistory } from '../../src/consumer/types.js';
import { isReprocessError } from '../../src/errors.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function collector() {
  const got: Delivery[] = [];
  const onDelivery = async (d: Delivery) => {
    got.push(d);
  };
  return { got, onDelivery };
}

/** One message `m1` delivered on a fake clock, then given back with retryLater(`delayMs`). */
async function deliveredThenDelayed(delayMs: number) {
  const clock = new FakeClock();
  const source = createMemorySource({ name: 'q', clock });
  const { got, onDelivery } = collector();
  source.publish({ body: 'x', id: 'm1' });
  await source.start(onDelivery, { prefetch: 1 });
  await clock.advance(0);
  const start = clock.now();
  await (got[0] as Delivery).retryLater(delayMs);
  return { clock, source, got, onDelivery, start };
}

function history(overrides: Partial<QuarantineHistory> = {}): QuarantineHistory {
  return {
    attempts: 3,
    firstFailureAt: 1,
    lastFailureAt: 2,
    lastError: { name: 'Error', code: 'E_DOWN', message: 'down' },
    reason: 'attempts_exhausted',
    source: 'orders',
    idempotencyKey: 'k1',
    quarantinedAt: 3,
    ...overrides,
  };
}

describe('createMemorySource', () => {
  it('delivers with a delivery count and publication time, and ack removes it', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'orders', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: { n: 1 }, headers: { 'idempotency-key': 'k1' }, id: 'm1' });
    await source.start(onDelivery, { prefetch: 5 });
    await clock.advance(0);
    expect(got).toHaveLength(1);
    const d = got[0] as Delivery;
    expect(d.id).toBe('m1');
    expect(text(d.body)).toBe('{"n":1}');
    expect(d.headers).toEqual({ 'idempotency-key': 'k1' });
    expect(d.deliveryCount).toBe(1);
    expect(d.publishedAt).toBe(clock.now());
    expect(d.source).toBe('orders');
    await d.ack();
    expect(source.isIdle()).toBe(true);
    expect(source.stats()).toMatchObject({ acked: 1, delivered: 1, unsettled: 0 });
  });

  it('encodes strings as UTF-8 and passes bytes through untouched', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    const bytes = new Uint8Array([0xff, 0x00, 0x7f]);
    source.publish({ body: 'héllo' });
    source.publish({ body: bytes });
    await source.start(onDelivery, { prefetch: 5 });
    await clock.advance(0);
    expect(text((got[0] as Delivery).body)).toBe('héllo');
    expect([...(got[1] as Delivery).body]).toEqual([0xff, 0x00, 0x7f]);
  });

  it('never has more than prefetch deliveries unsettled', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    for (let i = 0; i < 10; i++) source.publish({ body: i });
    await source.start(onDelivery, { prefetch: 3 });
    await clock.advance(0);
    expect(got).toHaveLength(3);
    await (got[0] as Delivery).ack();
    await clock.advance(0);
    expect(got).toHaveLength(4);
    for (const d of got.slice(1)) await d.ack();
    await clock.advance(0);
    expect(got).toHaveLength(7);
    expect(source.stats().maxUnsettled).toBe(3);
  });

  it('redelivers after the retryLater delay on the injected clock, counting deliveries', async () => {
    const { clock, source, got, start } = await deliveredThenDelayed(250);
    await clock.advance(249);
    expect(got).toHaveLength(1);
    expect(source.stats().delayed).toBe(1);
    await clock.advance(1);
    expect(got).toHaveLength(2);
    expect((got[1] as Delivery).deliveryCount).toBe(2);
    const log = source.deliveries('m1');
    expect(log.map((r) => r.deliveredAt - start)).toEqual([0, 250]);
    expect(log[0]).toMatchObject({ settlement: 'retry', delayMs: 250 });
  });

  it('close() keeps no timer for a delayed delivery; the next start waits out what is left of its delay', async () => {
    const { clock, source, got, onDelivery, start } = await deliveredThenDelayed(20_000);
    await clock.advance(5_000);
    await source.close();
    // Nothing holds a process that stopped its consumer and closed the source.
    expect(clock.pending).toBe(0);
    expect(source.stats().delayed).toBe(1);
    expect(source.isIdle()).toBe(false);
    await clock.advance(5_000);
    await source.start(onDelivery, { prefetch: 1 });
    await clock.advance(9_999);
    expect(got).toHaveLength(1);
    await clock.advance(1);
    expect(got).toHaveLength(2);
    expect(source.deliveries('m1').map((r) => r.deliveredAt - start)).toEqual([0, 20_000]);
  });

  it('refuses to settle a delivery twice and rejects a bad delay', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: 'x' });
    await source.start(onDelivery, { prefetch: 1 });
    await clock.advance(0);
    const d = got[0] as Delivery;
    await expect(d.retryLater(-1)).rejects.toSatisfy((e) =>
      isReprocessError(e, 'INVALID_ARGUMENT'),
    );
    await d.ack();
    await expect(d.ack()).rejects.toThrow(/already settled/);
  });

  it('treats copies published under one id as separate messages', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: 'x', id: 'dup' });
    source.publish({ body: 'x', id: 'dup' });
    await source.start(onDelivery, { prefetch: 5 });
    await clock.advance(0);
    expect(got.map((d) => [d.id, d.deliveryCount])).toEqual([
      ['dup', 1],
      ['dup', 1],
    ]);
    expect(source.deliveries('dup').map((r) => r.copy)).toEqual([1, 2]);
  });

  it('crash() puts unsettled deliveries back and refuses their late settling', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: 'a', id: 'a' });
    source.publish({ body: 'b', id: 'b' });
    await source.start(onDelivery, { prefetch: 2 });
    await clock.advance(0);
    expect(source.crash()).toBe(2);
    await clock.advance(0);
    expect(got).toHaveLength(2);
    await source.start(onDelivery, { prefetch: 2 });
    await clock.advance(0);
    expect(got.map((d) => `${d.id}${d.deliveryCount}`)).toEqual(['a1', 'b1', 'a2', 'b2']);
    await expect((got[0] as Delivery).ack()).rejects.toThrow(/no longer held/);
    expect(source.stats().lost).toBe(2);
  });

  it('interrupt() puts unsettled deliveries back and goes on delivering to the same consumer', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: 'a', id: 'a' });
    await source.start(onDelivery, { prefetch: 1 });
    await clock.advance(0);
    expect(source.interrupt()).toBe(1);
    await clock.advance(0);
    expect(got.map((d) => `${d.id}${d.deliveryCount}`)).toEqual(['a1', 'a2']);
    await expect((got[0] as Delivery).ack()).rejects.toThrow(/no longer held/);
    await (got[1] as Delivery).ack();
    expect(source.isIdle()).toBe(true);
  });

  it('redelivers a delivery neither settled nor touched within the ack timeout', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock, ackTimeout: '1s' });
    const { got, onDelivery } = collector();
    source.publish({ body: 'a' });
    await source.start(onDelivery, { prefetch: 1 });
    await clock.advance(0);
    await clock.advance(800);
    await (got[0] as Delivery).touch?.();
    await clock.advance(800);
    expect(got).toHaveLength(1);
    await clock.advance(200);
    expect(got).toHaveLength(2);
    expect((got[1] as Delivery).deliveryCount).toBe(2);
  });

  it('release() gives a delivery back at once', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: 'a' });
    await source.start(onDelivery, { prefetch: 1 });
    await clock.advance(0);
    await (got[0] as Delivery).release?.();
    await clock.advance(0);
    expect(got).toHaveLength(2);
    expect(source.stats().released).toBe(1);
  });

  it('stop() stops delivering; a new start picks up where it left', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'q', clock });
    const first = collector();
    source.publish({ body: 'a' });
    await source.start(first.onDelivery, { prefetch: 1 });
    await clock.advance(0);
    await source.stop();
    await (first.got[0] as Delivery).ack();
    source.publish({ body: 'b' });
    await clock.advance(0);
    expect(first.got).toHaveLength(1);
    const second = collector();
    await source.start(second.onDelivery, { prefetch: 1 });
    await clock.advance(0);
    expect(second.got.map((d) => text(d.body))).toEqual(['b']);
  });

  it('quarantine keeps payload and headers untouched beside the history', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'orders', clock });
    const { got, onDelivery } = collector();
    source.publish({ body: 'payload', headers: { a: '1' }, id: 'm1' });
    await source.start(onDelivery, { prefetch: 1 });
    await clock.advance(0);
    await (got[0] as Delivery).quarantine(history());
    const [q] = await source.deadLetters.list();
    expect(q && text(q.body)).toBe('payload');
    expect(q?.headers).toEqual({ a: '1' });
    expect(q?.messageId).toBe('m1');
    expect(q?.history.reason).toBe('attempts_exhausted');
    expect(source.isIdle()).toBe(true);
  });

  it('rejects bad options and bad messages with typed errors', async () => {
    expect(() => createMemorySource({ name: '' })).toThrow(/name/);
    const source = createMemorySource({ name: 'q' });
    expect(() => source.publish({ body: 'x', headers: { a: 1 as unknown as string } })).toThrow(
      /header "a"/,
    );
    await expect(source.start(async () => undefined, { prefetch: 0 })).rejects.toThrow(/prefetch/);
  });
});

describe('memory dead-letter queue and redrive', () => {
  async function quarantined(clock: FakeClock) {
    const dlq = createMemoryDeadLetterQueue({ clock });
    const orders = createMemorySource({ name: 'orders', clock, deadLetter: dlq });
    const { got, onDelivery } = collector();
    orders.publish({ body: 'a', id: 'a' });
    orders.publish({ body: 'b', id: 'b' });
    orders.publish({ body: 'c', id: 'c' });
    await orders.start(onDelivery, { prefetch: 3 });
    await clock.advance(0);
    const [a, b, c] = got as [Delivery, Delivery, Delivery];
    await a.quarantine(history({ idempotencyKey: 'ka', quarantinedAt: clock.now() }));
    await clock.advance(60_000);
    await b.quarantine(
      history({
        idempotencyKey: 'kb',
        lastError: { name: 'TypeError', message: 'bad' },
        reason: 'non_retryable',
        quarantinedAt: clock.now(),
      }),
    );
    await c.quarantine(history({ idempotencyKey: 'kc', quarantinedAt: clock.now() }));
    await orders.stop();
    return { dlq, orders };
  }

  it('lists by error code, age, key and limit', async () => {
    const clock = new FakeClock();
    const { dlq } = await quarantined(clock);
    const ids = async (f?: Parameters<typeof dlq.list>[0]) =>
      (await dlq.list(f)).map((m) => m.messageId);
    expect(await ids()).toEqual(['a', 'b', 'c']);
    expect(await ids({ errorCode: 'E_DOWN' })).toEqual(['a', 'c']);
    expect(await ids({ olderThanMs: 30_000 })).toEqual(['a']);
    expect(await ids({ idempotencyKey: 'kb' })).toEqual(['b']);
    expect(await ids({ limit: 2 })).toEqual(['a', 'b']);
    await expect(dlq.list({ limit: -1 })).rejects.toThrow(/limit/);
  });

  it('redrives matches back to their source with id, body and headers unchanged', async () => {
    const clock = new FakeClock();
    const { dlq, orders } = await quarantined(clock);
    expect(await redrive(dlq, { errorCode: 'E_DOWN' })).toBe(2);
    expect(dlq.size).toBe(1);
    const { got, onDelivery } = collector();
    await orders.start(onDelivery, { prefetch: 5 });
    await clock.advance(0);
    expect(got.map((d) => [d.id, text(d.body), d.deliveryCount])).toEqual([
      ['a', 'a', 1],
      ['c', 'c', 1],
    ]);
    // A redriven message counts its age from the redrive.
    expect((got[0] as Delivery).publishedAt).toBe(clock.now());
  });

  it('spaces a rate-limited redrive on the clock', async () => {
    const clock = new FakeClock();
    const { dlq, orders } = await quarantined(clock);
    const moving = redrive(dlq, { ratePerSecond: 2 });
    await clock.advance(0);
    expect(orders.stats().ready).toBe(1);
    await clock.advance(499);
    expect(orders.stats().ready).toBe(1);
    await clock.advance(1);
    expect(orders.stats().ready).toBe(2);
    await clock.advance(500);
    expect(await moving).toBe(3);
    expect(dlq.size).toBe(0);
  });

  it('a message discarded while a rate-limited redrive waits is not republished', async () => {
    const clock = new FakeClock();
    const { dlq, orders } = await quarantined(clock);
    const moving = redrive(dlq, { ratePerSecond: 2 });
    await clock.advance(0);
    const [, b] = await dlq.list();
    expect(dlq.remove((b as { id: string }).id)).toBe(true); // the operator discards b
    await clock.advance(1_000);
    expect(await moving).toBe(2);
    expect(orders.stats().ready).toBe(2);
  });

  it('refuses a redrive to a source it does not know, moving nothing', async () => {
    const clock = new FakeClock();
    const dlq = createMemoryDeadLetterQueue({ clock });
    dlq.add({
      messageId: 'x',
      body: new Uint8Array(),
      headers: {},
      history: history({ source: 'gone' }),
    });
    await expect(redrive(dlq)).rejects.toThrow(/no source named "gone"/);
    expect(dlq.size).toBe(1);
    await expect(redrive(dlq, { ratePerSecond: 0 })).rejects.toThrow(/ratePerSecond/);
  });
});
