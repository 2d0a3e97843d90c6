import type { ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import {
  type AmqpSource,
  createAmqpDeadLetterQueue,
  createAmqpSource,
  declareAmqpTopology,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../../src/consumer/amqp/index.js';
import type { Delivery, QuarantineHistory } from '../../src/consumer/types.js';
import { isReprocessError } from '../../src/errors.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { expectOneClosing } from '../helpers/closing.js';
import { runTsx } from '../helpers/run-tsx.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import {
  AMQP_URL,
  deleteQueues,
  forceCloseConnections,
  publishTo,
  queueArguments,
  readyCount,
  testConnection,
} from './fixtures/broker-amqp.js';
import { createInbox, racingRestarts } from './fixtures/broker-inbox.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';

const TIERS = ['150ms', '400ms'];

function history(overrides: Partial<QuarantineHistory> = {}): QuarantineHistory {
  return {
    attempts: 3,
    firstFailureAt: 1_700_000_000_000,
    lastFailureAt: 1_700_000_005_000,
    lastError: { name: 'PaymentDeclined', code: 'CARD_DECLINED', message: 'card\ndeclined' },
    reason: 'attempts_exhausted',
    source: 'set-by-test',
    idempotencyKey: 'order-1',
    quarantinedAt: Date.now(),
    ...overrides,
  };
}

await describeWithService('rabbitmq', 'RabbitMQ source (amqplib) against the port', () => {
  let admin: ChannelModel;
  let n = 0;
  const sources: AmqpSource[] = [];
  const queues: string[] = [];

  beforeAll(async () => {
    admin = await testConnection();
  });
  afterEach(async () => {
    for (const source of sources.splice(0)) await source.close();
  });
  afterAll(async () => {
    await deleteQueues(admin, queues);
    await admin.close();
  });

  function newQueue(): string {
    n += 1;
    const queue = `${RUN_ID}.amqp.${n}`;
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
    queues.push(topology.queue, topology.deadLetterQueue, ...topology.tiers.map((t) => t.queue));
    return queue;
  }

  function source(queue: string, extra: Record<string, unknown> = {}): AmqpSource {
    const s = createAmqpSource({
      url: AMQP_URL,
      connectionName: `${RUN_ID}-${queue}`,
      queue,
      delayTiers: TIERS,
      ...extra,
    });
    sources.push(s);
    return s;
  }

  it('starts again after stop as often as asked, without keeping a channel per run; a start and stop racing settle, one consumer left', async () => {
    const queue = newQueue();
    const connection = await testConnection();
    try {
      const s = createAmqpSource({ connection, queue, delayTiers: TIERS });
      sources.push(s);
      const channels = () =>
        (
          connection as unknown as { connection: { channels: unknown[] } }
        ).connection.channels.filter(Boolean).length;
      const inbox = createInbox();
      for (let i = 0; i < 10; i++) {
        await s.start(inbox.onDelivery, { prefetch: 1 });
        await s.stop();
      }
      // Runs whose deliveries were all settled leave no channel behind (the publisher's and
      // the last run's stay).
      await s.start(inbox.onDelivery, { prefetch: 1 });
      expect(channels()).toBeLessThanOrEqual(3);
      await s.stop();
      // A stop and starts racing: every call settles, and one consumer is left.
      expect(await racingRestarts(s, inbox)).toBe('settled');
      await publishTo(admin, queue, 'once');
      const { delivery } = await inbox.next();
      await delivery.ack();
      expect(await inbox.arrivesWithin(300)).toBe(false);
      const consumers = await admin.createChannel();
      try {
        expect((await consumers.checkQueue(queue)).consumerCount).toBe(1);
      } finally {
        await consumers.close();
      }
    } finally {
      await sources.pop()?.close();
      await connection.close();
    }
  });

  it('a first start that fails lets go of its connection: the process exits on its own', async () => {
    const run = await runTsx([
      'test/integration/fixtures/failed-start-exits.ts',
      'amqp',
      AMQP_URL,
      `${RUN_ID}.missing`,
    ]);
    expect(run.stdout).toContain('start failed');
    expect(run.stdout).not.toContain('still alive');
    expect(run.code).toBe(0);
  }, 20_000);

  it('a stop and a start while a restart opens its channel on a slow broker: one consumer, prefetch kept, none left after close', async () => {
    const queue = newQueue();
    const connection = await testConnection();
    const s = createAmqpSource({ connection, queue, delayTiers: TIERS });
    try {
      const inFlight = { now: 0, most: 0 };
      const handler = async (delivery: Delivery) => {
        inFlight.now++;
        inFlight.most = Math.max(inFlight.most, inFlight.now);
        await new Promise((resolve) => setTimeout(resolve, 50));
        inFlight.now--;
        await delivery.ack();
      };
      await s.start(handler, { prefetch: 1 });
      await s.stop();
      // A slow broker: opening a channel takes 50 ms.
      const create = connection.createChannel.bind(connection);
      (connection as unknown as { createChannel: () => Promise<unknown> }).createChannel =
        async () => {
          await new Promise((resolve) => setTimeout(resolve, 50));
          return create();
        };
      const second = s.start(handler, { prefetch: 1 });
      await new Promise((resolve) => setTimeout(resolve, 10));
      await s.stop();
      const third = s.start(handler, { prefetch: 1 });
      await Promise.all([second, third]);
      const consumers = async () => {
        const channel = await admin.createChannel();
        try {
          return (await channel.checkQueue(queue)).consumerCount;
        } finally {
          await channel.close();
        }
      };
      await vi.waitFor(async () => expect(await consumers()).toBe(1), { timeout: 3000 });
      for (let i = 0; i < 4; i++) await publishTo(admin, queue, `m${i}`);
      await vi.waitFor(async () => expect(await readyCount(admin, queue)).toBe(0), {
        timeout: 5000,
      });
      await vi.waitFor(() => expect(inFlight.now).toBe(0), { timeout: 5000 });
      expect(inFlight.most).toBe(1);
      await s.close();
      await vi.waitFor(async () => expect(await consumers()).toBe(0), { timeout: 3000 });
    } finally {
      await s.close();
      await connection.close().catch(() => {});
    }
  });

  it('a consumer stopped while its source still connects consumes nothing; the next one gets the message once', async () => {
    const queue = newQueue();
    const store = createMemoryStore();
    const ran: string[] = [];
    const handler = async (m: { id: string }) => {
      ran.push(m.id);
    };
    const early = createConsumer({ source: source(queue), handler, idempotency: { store } });
    const starting = early.start();
    expect(await early.stop()).toEqual({ finished: 0, released: 0, settling: 0 });
    await starting;
    expect(early.state).toBe('stopped');
    await publishTo(admin, queue, Buffer.from('{}'), { messageId: 'after-stop' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ran).toEqual([]);
    const channel = await admin.createChannel();
    try {
      // Nothing attached to the queue, and the message waits in it, never delivered.
      expect(await channel.checkQueue(queue)).toMatchObject({ consumerCount: 0, messageCount: 1 });
    } finally {
      await channel.close();
    }

    const late = createConsumer({ source: source(queue), handler, idempotency: { store } });
    await late.start();
    await vi.waitFor(() => expect(ran).toEqual(['after-stop']), { timeout: 5_000 });
    await late.stop();
  });

  it('a stop() while the consumer is being registered cancels it: no redelivery loop until close', async () => {
    const queue = newQueue();
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
    await declareAmqpTopology(admin, topology);
    for (let i = 0; i < 3; i++)
      await publishTo(admin, queue, Buffer.from('{}'), { messageId: `s${i}` });
    // A connection whose consume takes 200 ms to register, as a slow network would.
    const own = await testConnection();
    // consume() is held until the test has called stop(): the stop lands while the consumer
    // is being registered, whatever the machine's speed.
    let entered!: () => void;
    const inConsume = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let letGo!: () => void;
    const stopped = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const slow = {
      createConfirmChannel: () => own.createConfirmChannel(),
      close: () => own.close(),
      async createChannel() {
        const channel = await own.createChannel();
        const consume = channel.consume.bind(channel);
        channel.consume = (async (...args: Parameters<typeof consume>) => {
          entered();
          await stopped;
          return consume(...args);
        }) as typeof channel.consume;
        return channel;
      },
    };
    const s = createAmqpSource({ connection: slow, queue, delayTiers: TIERS, declare: false });
    sources.push(s);
    let handled = 0;
    const started = s.start(
      async () => {
        handled += 1;
      },
      { prefetch: 5 },
    );
    await inConsume;
    await s.stop();
    letGo();
    await started;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await s.close();
    await own.close().catch(() => undefined);
    expect(handled).toBe(0);
    // Each message went back at most once, not in a loop of thousands.
    const channel = await admin.createChannel();
    try {
      const counts: number[] = [];
      for (;;) {
        const message = await channel.get(queue, { noAck: true });
        if (message === false) break;
        counts.push(Number(message.properties.headers?.['x-delivery-count'] ?? 0));
      }
      expect(counts).toHaveLength(3);
      // Given back a time or two before the cancel reached the broker; before the fix, a
      // loop of nack and redelivery ran until close (about 1,400 deliveries a second).
      expect(Math.max(...counts)).toBeLessThan(10);
    } finally {
      await channel.close();
    }
  });

  it('close() right after a consumer stop sends the acks of handlers that finished meanwhile', async () => {
    const queue = newQueue();
    const s = source(queue);
    let handled = 0;
    let stopNow!: () => void;
    const stopSignal = new Promise<void>((resolve) => {
      stopNow = resolve;
    });
    const consumer = createConsumer({
      source: s,
      concurrency: 4,
      prefetch: 8,
      idempotency: { store: createMemoryStore() },
      handler: async () => {
        handled += 1;
        await new Promise((resolve) => setTimeout(resolve, 150));
        if (handled === 20) stopNow();
      },
    });
    await consumer.start();
    for (let i = 0; i < 40; i++) {
      await publishTo(admin, queue, Buffer.from('{}'), { messageId: `a${i}` });
    }
    await stopSignal;
    await consumer.stop({ timeoutMs: 5_000 });
    const { acked } = consumer.stats();
    await s.close();
    // Every ack the consumer reported reached the broker: exactly the rest is left (the
    // unacked ones return to the queue as the channel closes, which may take a moment).
    await vi.waitFor(async () => expect(await readyCount(admin, queue)).toBe(40 - acked), {
      timeout: 5_000,
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await readyCount(admin, queue)).toBe(40 - acked);
  });

  it('delivers payload, headers, id and count 1, and an ack removes it', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 5 });
    const body = Buffer.from([0xff, 0x00, 0x7b, 0xfe]); // not UTF-8, not JSON: bytes untouched
    await publishTo(admin, queue, body, {
      messageId: 'm-1',
      headers: {
        tenant: 'acme',
        n: 7,
        raw: Buffer.from('bytes'),
        // AMQP's own timestamp and decimal types: shown as the values, not amqplib's envelope.
        sentAt: { '!': 'timestamp', value: 1_700_000_123 },
        price: { '!': 'decimal', value: { places: 2, digits: 1250 } },
        rate: { '!': 'decimal', value: { places: 4, digits: 5 } },
      },
      timestamp: 1_700_000_000,
    });
    const { delivery } = await inbox.next();
    expect(Buffer.from(delivery.body)).toEqual(body);
    expect(delivery.id).toBe('m-1');
    expect(delivery.headers).toEqual({
      tenant: 'acme',
      n: '7',
      raw: 'bytes',
      sentAt: '1700000123',
      price: '12.50',
      rate: '0.0005',
    });
    expect(delivery.deliveryCount).toBe(1);
    expect(delivery.publishedAt).toBe(1_700_000_000_000); // AMQP timestamps are seconds
    expect(delivery.source).toBe(queue);
    expect(s.name).toBe(queue);
    await delivery.ack();
    await expect(delivery.ack()).rejects.toSatisfy((e) => isReprocessError(e, 'INVALID_ARGUMENT'));
    await s.stop();
    expect(await inbox.arrivesWithin(200)).toBe(false);
    expect(await readyCount(admin, queue)).toBe(0);
  });

  it('closes once when close() is called twice at once, the source and the dead-letter queue', async () => {
    const queue = newQueue();
    const s = source(queue);
    await s.start(createInbox().onDelivery, { prefetch: 5 });
    // Two closings at once used to hang in amqplib (both closed the connection).
    await expectOneClosing(() => s.close());

    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    expect(await dlq.count()).toBe(0);
    // The second waits for the first, instead of returning while the connection still closes.
    await expectOneClosing(() => dlq.close());
  });

  it('retryLater waits in the delay tier (rounded up) and comes back to the source, counted', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 5 });
    await publishTo(admin, queue, '{"order":1}', { messageId: 'm-2', headers: { tenant: 'acme' } });
    const first = await inbox.next();
    const askedAt = Date.now();
    await first.delivery.retryLater(200); // rounds up to the 400ms tier
    const second = await inbox.next();
    // The tier's TTL is a lower bound RabbitMQ enforces: never sooner than asked.
    expect(second.at - askedAt).toBeGreaterThanOrEqual(400 - 5);
    expect(second.delivery.id).toBe('m-2');
    expect(second.delivery.deliveryCount).toBe(2);
    expect(second.delivery.headers).toEqual({ tenant: 'acme' }); // no x-death, no x-reprocess-*
    expect(Buffer.from(second.delivery.body).toString()).toBe('{"order":1}');
    await second.delivery.retryLater(0); // smallest tier
    const third = await inbox.next();
    expect(third.delivery.deliveryCount).toBe(3);
    expect(third.delivery.publishedAt).toBe(second.delivery.publishedAt);
    await third.delivery.ack();
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
    for (const tier of topology.tiers) expect(await readyCount(admin, tier.queue)).toBe(0);
  });

  it('a message that was never settled comes back with the broker count (quorum x-delivery-count)', async () => {
    const queue = newQueue();
    const first = source(queue);
    const inbox = createInbox();
    await first.start(inbox.onDelivery, { prefetch: 1 });
    await publishTo(admin, queue, 'x', { messageId: 'm-3' });
    const a = await inbox.next();
    expect(a.delivery.deliveryCount).toBe(1);
    await first.close(); // as a crash would: the channel goes, the message is requeued
    await expect(a.delivery.ack()).rejects.toSatisfy((e) =>
      isReprocessError(e, 'AMQP_CHANNEL_LOST'),
    );
    const second = source(queue);
    await second.start(inbox.onDelivery, { prefetch: 1 });
    const b = await inbox.next();
    expect(b.delivery.id).toBe('m-3');
    expect(b.delivery.deliveryCount).toBe(2);
    await b.delivery.ack();
  });

  it('prefetch bounds the unsettled deliveries; settling one lets the next in', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 2 });
    for (let i = 0; i < 5; i++) await publishTo(admin, queue, `m${i}`);
    const a = await inbox.next();
    await inbox.next();
    expect(await inbox.arrivesWithin(300)).toBe(false);
    await a.delivery.ack();
    const c = await inbox.next();
    expect(Buffer.from(c.delivery.body).toString()).toBe('m2');
    expect(inbox.all).toHaveLength(3);
  });

  it('quarantine publishes a confirmed copy with the history, then acks; redrive brings it back', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 5 });
    await publishTo(admin, queue, 'poison?', {
      messageId: 'm-4',
      headers: { tenant: 'acme' },
      contentType: 'text/plain',
    });
    const { delivery } = await inbox.next();
    const h = history({ source: queue });
    await delivery.quarantine(h);
    expect(await readyCount(admin, queue)).toBe(0);

    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    try {
      const listed = await dlq.list();
      expect(listed).toHaveLength(1);
      expect(listed[0]?.id).toBe('m-4');
      expect(listed[0]?.headers).toEqual({ tenant: 'acme' });
      expect(listed[0]?.history).toEqual(h);
      expect(Buffer.from(listed[0]?.body ?? []).toString()).toBe('poison?');
      // Listing hands everything back.
      expect(await dlq.count()).toBe(1);
      expect(await dlq.list({ errorCode: 'OTHER' })).toEqual([]);
      expect(await dlq.list({ idempotencyKey: 'order-1' })).toHaveLength(1);

      expect(await dlq.redrive({ errorCode: 'CARD_DECLINED' })).toBe(1);
      expect(await dlq.count()).toBe(0);
      const back = await inbox.next();
      expect(back.delivery.id).toBe('m-4');
      expect(back.delivery.headers).toEqual({ tenant: 'acme' });
      expect(back.delivery.deliveryCount).toBe(1); // a redrive is a fresh start
      expect(Buffer.from(back.delivery.body).toString()).toBe('poison?');
      await back.delivery.ack();
    } finally {
      await dlq.close();
    }
  });

  /** A delivery of `id` on a new queue whose dead-letter queue is gone, its quarantine refused. */
  async function refusedQuarantine(id: string) {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 5 });
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
    await deleteQueues(admin, [topology.deadLetterQueue]);
    await publishTo(admin, queue, 'keep me', { messageId: id });
    const { delivery } = await inbox.next();
    await expect(delivery.quarantine(history({ source: queue }))).rejects.toSatisfy((e) =>
      isReprocessError(e, 'AMQP_PUBLISH_FAILED'),
    );
    return { queue, s, topology, delivery };
  }

  it('a refused quarantine leaves the original on the source queue: a worker that dies then loses nothing', async () => {
    const { queue, s, topology } = await refusedQuarantine('m-kept');
    // The worker dies before anything else: an ack before the confirm would have lost it.
    await s.close();
    await declareAmqpTopology(admin, topology);
    expect(await readyCount(admin, queue)).toBe(1);
  });

  it('quarantine is refused (publisher confirm / mandatory) when the dead-letter queue is gone; the message stays', async () => {
    const { queue, topology, delivery } = await refusedQuarantine('m-5');
    // Not acked and not settled: it can still be retried or quarantined once the queue is back.
    await declareAmqpTopology(admin, topology);
    await delivery.quarantine(history({ source: queue }));
    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    try {
      expect((await dlq.list()).map((m) => m.id)).toEqual(['m-5']);
    } finally {
      await dlq.close();
    }
  });

  it('a retry the broker refuses (its delay tier gone) is given back, not held unacked: the queue keeps flowing', async () => {
    const queue = newQueue();
    const s = source(queue);
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
    const runs: string[] = [];
    const acked: string[] = [];
    const consumer = createConsumer({
      source: s,
      idempotency: { store: createMemoryStore() },
      key: (m) => m.id,
      retry: { base: '100ms', cap: '100ms' },
      touchIntervalMs: 0,
      handler: async (m) => {
        runs.push(m.id);
        if (m.id === 'm1' && runs.filter((id) => id === 'm1').length === 1) {
          throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
        }
      },
      onEvent: (e) => {
        if (e.type === 'acked') acked.push(e.id);
      },
    });
    await consumer.start();
    for (const tier of topology.tiers) await deleteQueues(admin, [tier.queue]);
    await publishTo(admin, queue, '{}', { messageId: 'm1' });
    await publishTo(admin, queue, '{}', { messageId: 'm2' });
    for (let i = 0; i < 100 && acked.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await consumer.stop({ timeoutMs: 1000 });
    // m1 failed, its delayed retry was refused, it came back and ran again; m2 was not blocked.
    expect(acked.sort()).toEqual(['m1', 'm2']);
    expect(runs.filter((id) => id === 'm1')).toHaveLength(2);
  });

  it('redrive filters by age, key and limit, rate-limits, and leaves the rest in place', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 10 });
    for (let i = 0; i < 4; i++) {
      await publishTo(admin, queue, `m${i}`, { messageId: `q-${i}` });
      const { delivery } = await inbox.next();
      await delivery.quarantine(
        history({
          source: queue,
          idempotencyKey: `k-${i}`,
          quarantinedAt: i < 2 ? Date.now() - 3_600_000 : Date.now(),
        }),
      );
    }
    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    try {
      expect((await dlq.list({ olderThanMs: 600_000 })).map((m) => m.id).sort()).toEqual([
        'q-0',
        'q-1',
      ]);
      expect(await dlq.list({ limit: 1 })).toHaveLength(1);
      expect(await dlq.redrive({ idempotencyKey: 'k-3' })).toBe(1);
      expect(await dlq.redrive({ olderThanMs: 600_000, limit: 1, ratePerSecond: 100 })).toBe(1);
      expect(await dlq.count()).toBe(2);
      const ids = [(await inbox.next()).delivery.id, (await inbox.next()).delivery.id].sort();
      expect(ids[1]).toBe('q-3');
      expect(['q-0', 'q-1']).toContain(ids[0]);
      await expect(dlq.redrive({ ratePerSecond: 0 })).rejects.toSatisfy((e) =>
        isReprocessError(e, 'INVALID_ARGUMENT'),
      );
    } finally {
      await dlq.close();
    }
  });

  it('an enormous message (8 MiB) survives a delay hop and quarantine byte for byte', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 1 });
    const body = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4096) body[i] = i % 251;
    await publishTo(admin, queue, body, { messageId: 'big' });
    const first = await inbox.next();
    expect(first.delivery.body.byteLength).toBe(body.length);
    await first.delivery.retryLater(1);
    const second = await inbox.next();
    expect(Buffer.from(second.delivery.body).equals(body)).toBe(true);
    await second.delivery.quarantine(
      history({ source: queue, lastError: { name: 'E', message: 'x'.repeat(100_000) } }),
    );
    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    try {
      const [listed] = await dlq.list();
      expect(Buffer.from(listed?.body ?? []).equals(body)).toBe(true);
      // A huge error message is cut so the headers fit the broker's limits.
      expect(listed?.history.lastError.message.length).toBeLessThanOrEqual(2001);
    } finally {
      await dlq.close();
    }
  });

  it('the broker closing the connection: in-flight settles fail safe, the source reconnects, the message comes back', async () => {
    const queue = newQueue();
    const errors: unknown[] = [];
    const s = source(queue, { onError: (e: unknown) => errors.push(e) });
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 5 });
    await publishTo(admin, queue, 'survivor', { messageId: 'm-9' });
    const first = await inbox.next();
    expect(await forceCloseConnections(`${RUN_ID}-${queue}`)).toBeGreaterThanOrEqual(1);
    // The channel it came on is gone: nothing can be acked or copied from it.
    await expect(first.delivery.retryLater(1)).rejects.toSatisfy((e) =>
      isReprocessError(e, 'AMQP_CHANNEL_LOST'),
    );
    const again = await inbox.next(15_000);
    expect(again.delivery.id).toBe('m-9');
    expect(again.delivery.deliveryCount).toBe(2);
    await again.delivery.ack();
    // And it keeps consuming new messages on the new connection.
    await publishTo(admin, queue, 'after', { messageId: 'm-10' });
    const after = await inbox.next();
    expect(after.delivery.id).toBe('m-10');
    await after.delivery.ack();
    expect(await readyCount(admin, queue)).toBe(0);
    // The broker's close was told to onError, not swallowed.
    expect(errors.some((e) => String(e).includes('CONNECTION_FORCED'))).toBe(true);
  });

  it('its queue deleted while it consumes: it reports it, even to an onError that throws, and resumes once the queue is back', async () => {
    const queue = newQueue();
    const errors: unknown[] = [];
    // A reporter that fails itself changes nothing: it is called inside amqplib's handlers.
    const s = source(queue, {
      onError: (e: unknown) => {
        errors.push(e);
        throw new Error('reporter bug');
      },
    });
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 5 });
    await deleteQueues(admin, [queue]);
    // The cancel, then a subscribe that failed for the missing queue (404), both reported.
    await vi.waitFor(
      () => {
        expect(errors.some((e) => isReprocessError(e, 'AMQP_CHANNEL_LOST'))).toBe(true);
        expect(errors.some((e) => String(e).includes('NOT_FOUND'))).toBe(true);
      },
      { timeout: 10_000 },
    );
    // Back (as an operator would declare it again): the source subscribes again on its own.
    await declareAmqpTopology(admin, resolveAmqpTopology({ queue, delayTiers: TIERS }));
    await publishTo(admin, queue, 'back', { messageId: 'm-back' });
    const back = await inbox.next(15_000);
    expect(back.delivery.id).toBe('m-back');
    await back.delivery.ack();
  });

  it('declares its quorum dead-letter queue with no delivery limit to speak of; one declared before without it is kept', async () => {
    // Listing hands every message back, and a quorum queue counts that as a delivery: past
    // a limit (RabbitMQ 4.0 sets 20 by default) it would drop quarantined messages.
    const topology = resolveAmqpTopology({ queue: newQueue(), delayTiers: TIERS });
    await declareAmqpTopology(admin, topology);
    expect(await queueArguments(topology.deadLetterQueue)).toContain(
      '{"x-delivery-limit",1000000000}',
    );
    // An earlier declaration without it: accepted as it is, the source starts.
    const older = resolveAmqpTopology({ queue: newQueue(), delayTiers: TIERS });
    const channel = await admin.createChannel();
    await channel.assertQueue(older.deadLetterQueue, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum' },
    });
    await channel.close();
    await declareAmqpTopology(admin, older);
    expect(await queueArguments(older.deadLetterQueue)).not.toContain('x-delivery-limit');
    const s = source(older.queue);
    await s.start(async () => {}, { prefetch: 1 });
    // One given a delivery limit of its own (by hand) is kept with it too.
    const handMade = resolveAmqpTopology({ queue: newQueue(), delayTiers: TIERS });
    const byHand = await admin.createChannel();
    await byHand.assertQueue(handMade.deadLetterQueue, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 500 },
    });
    await byHand.close();
    await declareAmqpTopology(admin, handMade);
    expect(await queueArguments(handMade.deadLetterQueue)).toContain('{"x-delivery-limit",500}');
    // A dead-letter queue of another type is still refused with a clear error.
    const classic = resolveAmqpTopology({ queue: newQueue(), delayTiers: TIERS });
    const other = await admin.createChannel();
    await other.assertQueue(classic.deadLetterQueue, { durable: true });
    await other.close();
    await expect(declareAmqpTopology(admin, classic)).rejects.toThrow(/could not declare queue/);
  });

  it('a quarantine copy is fitted to the 64 KiB header table: the error message is cut, then the largest publisher headers left out', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 2 });
    const longError = { name: 'Declined', message: 'm'.repeat(2000) };
    // 64,500 bytes of headers: with a 2,000-character error message the copy would not fit.
    await publishTo(admin, queue, 'near', {
      messageId: 'near-1',
      headers: { big: 'y'.repeat(64_400), 'idempotency-key': 'k-near' },
    });
    const near = await inbox.next();
    await near.delivery.quarantine(history({ source: queue, lastError: longError }));
    // Headers that fill the table on their own: only leaving one out lets the history in.
    await publishTo(admin, queue, 'full', {
      messageId: 'full-1',
      headers: { a: 'a'.repeat(40_000), b: 'b'.repeat(25_300), 'idempotency-key': 'k-full' },
    });
    const full = await inbox.next();
    await full.delivery.quarantine(history({ source: queue, lastError: longError }));
    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    try {
      const listed = await dlq.list();
      const byId = new Map(listed.map((m) => [m.id, m]));
      const fitted = byId.get('near-1');
      expect(fitted?.headers.big).toHaveLength(64_400);
      expect(fitted?.history.lastError.message).toMatch(/^m+…$/);
      expect(fitted?.history.lastError.message.length).toBeLessThan(2000);
      const dropped = byId.get('full-1');
      expect(dropped?.headers.a).toBeUndefined();
      expect(dropped?.headers.b).toHaveLength(25_300);
      expect(dropped?.headers['idempotency-key']).toBe('k-full');
      expect(dropped?.history.reason).toBe('attempts_exhausted');
      expect(await readyCount(admin, queue)).toBe(0);
    } finally {
      await dlq.close();
    }
  });

  it('a retry copy is fitted too, and a header too deep to measure is left out of a quarantine copy', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 2 });
    // 65,500 bytes of headers: publishable, but not with the two hop headers of a retry.
    const a = 'a'.repeat(40_000);
    const b = 'b'.repeat(65_500 - 4 - (7 + a.length) - (1 + 15 + 1 + 4 + 5) - 7);
    await publishTo(admin, queue, 'retry', {
      messageId: 'retry-1',
      headers: { a, b, 'idempotency-key': 'k-rty' },
    });
    const first = await inbox.next();
    await first.delivery.retryLater(1);
    const again = await inbox.next(15_000);
    expect(again.delivery.id).toBe('retry-1');
    expect(again.delivery.deliveryCount).toBe(2);
    expect(again.delivery.headers.a).toBeUndefined();
    expect(again.delivery.headers.b).toHaveLength(b.length);
    expect(again.delivery.headers['idempotency-key']).toBe('k-rty');
    await again.delivery.ack();

    // Nested deeper than the size is measured: left out, the message still quarantined.
    let deep: Record<string, unknown> = { leaf: 'x' };
    for (let i = 0; i < 600; i++) deep = { d: deep };
    await publishTo(admin, queue, 'deep', {
      messageId: 'deep-1',
      headers: { deep, 'idempotency-key': 'k-deep' },
    });
    const nested = await inbox.next();
    await nested.delivery.quarantine(history({ source: queue }));
    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue });
    try {
      const [listed] = await dlq.list();
      expect(listed?.id).toBe('deep-1');
      expect(listed?.headers['idempotency-key']).toBe('k-deep');
      expect(listed?.headers.deep).toBeUndefined();
    } finally {
      await dlq.close();
    }
  });

  it('a redrive of a dead-letter queue that does not exist fails as list does, not as a cut-short publish', async () => {
    const dlq = createAmqpDeadLetterQueue({ url: AMQP_URL, queue: `${RUN_ID}.no-such-queue` });
    try {
      const listed = await dlq.list().then(
        () => undefined,
        (e: unknown) => e,
      );
      const redriven = await dlq.redrive().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(listed)).toMatch(/NOT_FOUND/);
      expect(String(redriven)).toMatch(/NOT_FOUND/);
      expect(isReprocessError(redriven, 'AMQP_PUBLISH_FAILED')).toBe(false);
    } finally {
      await dlq.close();
    }
  });

  it('a redrive cut by a dropped connection says how many it had moved, and loses nothing', async () => {
    const queue = newQueue();
    const s = source(queue);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 1 });
    for (let i = 0; i < 10; i++) {
      await publishTo(admin, queue, `m${i}`, { messageId: `cut-${i}` });
      const { delivery } = await inbox.next();
      await delivery.quarantine(history({ source: queue, idempotencyKey: `k-${i}` }));
    }
    await s.stop();
    const proxy = await startTcpProxy(5672);
    const dlq = createAmqpDeadLetterQueue({
      url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
      queue,
    });
    try {
      const running = dlq.redrive({ ratePerSecond: 20 });
      await vi.waitFor(async () => expect(await readyCount(admin, queue)).toBeGreaterThan(1));
      proxy.dropAll();
      const error = await running.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isReprocessError(error, 'AMQP_PUBLISH_FAILED')).toBe(true);
      // Cut during a publish ("it stays in"), an ack ("could not be removed from") or between
      // messages ("the messages not moved stay in"): each names the dead-letter queue.
      expect(String(error)).toContain(`${queue}.dlq`);
      const moved = Number(/redrive stopped after (\d+) message/.exec(String(error))?.[1]);
      expect(moved).toBeGreaterThan(0);
      // What was taken and not moved went back to the dead-letter queue; nothing is lost.
      await vi.waitFor(async () => {
        const left = await readyCount(admin, `${queue}.dlq`);
        const back = await readyCount(admin, queue);
        expect(back).toBeGreaterThanOrEqual(moved);
        expect(left + back).toBeGreaterThanOrEqual(10);
      });
    } finally {
      await dlq.close().catch(() => undefined);
      await proxy.close();
    }
  });

  it('rejects bad options with typed errors naming the problem', async () => {
    expect(() => createAmqpSource({ url: 'http://x', queue: 'q' })).toThrow(/amqp:\/\//);
    expect(() => createAmqpSource({ url: AMQP_URL, queue: '' })).toThrow(/queue/);
    expect(() => createAmqpSource({ url: AMQP_URL, queue: 'amq.x' })).toThrow(/amq\./);
    expect(() => createAmqpSource({ url: AMQP_URL, queue: 'q', delayTiers: [] })).toThrow(
      /delayTiers/,
    );
    expect(() => createAmqpSource({ url: AMQP_URL, queue: 'q', delayTiers: ['soon'] })).toThrow(
      /delayTiers\[0\]/,
    );
    expect(() =>
      createAmqpSource({ url: AMQP_URL, queue: 'q', queueType: 'lazy' as 'classic' }),
    ).toThrow(/queueType/);
    const s = source(newQueue());
    await expect(s.start(async () => {}, { prefetch: 0 })).rejects.toSatisfy((e) =>
      isReprocessError(e, 'INVALID_ARGUMENT'),
    );
    const unreachable = createAmqpSource({ url: 'amqp://guest:guest@127.0.0.1:1', queue: 'q' });
    await expect(unreachable.start(async () => {}, { prefetch: 1 })).rejects.toThrow();
  });

  it('a classic-queue topology works too (documented fallback), counting a crash-redelivery once', async () => {
    const queue = newQueue();
    const first = source(queue, { queueType: 'classic' });
    const inbox = createInbox();
    await first.start(inbox.onDelivery, { prefetch: 1 });
    await publishTo(admin, queue, 'c', { messageId: 'c-1' });
    const a = await inbox.next();
    await a.delivery.retryLater(1);
    const b = await inbox.next();
    expect(b.delivery.deliveryCount).toBe(2);
    await first.close();
    const second = source(queue, { queueType: 'classic' });
    await second.start(inbox.onDelivery, { prefetch: 1 });
    const c = await inbox.next();
    expect(c.delivery.deliveryCount).toBe(3);
    await c.delivery.ack();
    // Declaring the same queue as quorum now is refused with a clear error.
    const topology = resolveAmqpTopology({ queue, delayTiers: TIERS, queueType: 'quorum' });
    await expect(declareAmqpTopology(admin, topology)).rejects.toThrow(/queueType/);
    await deleteAmqpTopology(admin, resolveAmqpTopology({ queue, delayTiers: TIERS }));
  });
});
