import type { Channel, ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import {
  type AmqpSource,
  createAmqpSource,
  declareAmqpTopology,
  resolveAmqpTopology,
} from '../../src/consumer/amqp/index.js';
import { createConsumer } from '../../src/consumer/consumer.js';
import type { Delivery } from '../../src/consumer/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import {
  AMQP_URL,
  deleteQueues,
  forceCloseConnections,
  publishTo,
  readyCount,
  testConnection,
} from './fixtures/broker-amqp.js';
import { createInbox } from './fixtures/broker-inbox.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';

const TIERS = ['150ms'];

/** Resolves after the event loop has turned a few times (acks go out once per turn). */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, 100));
}

function ids(deliveries: readonly { delivery: Delivery }[]): string[] {
  return deliveries.map((d) => d.delivery.id).sort();
}

await describeWithService(
  'rabbitmq',
  'RabbitMQ acks: coalesced, never past an unfinished one',
  () => {
    let admin: ChannelModel;
    let n = 0;
    const sources: AmqpSource[] = [];
    const queues: string[] = [];
    /** Every basic.ack amqplib sends in this file: [delivery tag, multiple]. */
    let acks: Array<[number, boolean]> = [];

    beforeAll(async () => {
      admin = await testConnection();
      // Every amqplib channel shares this prototype: watch (and pass through) the acks sent.
      const probe: Channel = await admin.createChannel();
      const proto = Object.getPrototypeOf(probe) as Channel;
      await probe.close();
      const original = proto.ack;
      vi.spyOn(proto, 'ack').mockImplementation(function (this: Channel, message, allUpTo) {
        acks.push([message.fields.deliveryTag, allUpTo === true]);
        return original.call(this, message, allUpTo);
      });
    });
    afterEach(async () => {
      for (const source of sources.splice(0)) await source.close();
      acks = [];
    });
    afterAll(async () => {
      vi.restoreAllMocks();
      await deleteQueues(admin, queues);
      await admin.close();
    });

    async function newQueue(): Promise<string> {
      n += 1;
      const queue = `${RUN_ID}.acks.${n}`;
      const topology = resolveAmqpTopology({ queue, delayTiers: TIERS });
      queues.push(topology.queue, topology.deadLetterQueue, ...topology.tiers.map((t) => t.queue));
      await declareAmqpTopology(admin, topology);
      return queue;
    }

    function source(queue: string, errors: unknown[] = []): AmqpSource {
      const s = createAmqpSource({
        url: AMQP_URL,
        connectionName: `${RUN_ID}-${queue}`,
        queue,
        delayTiers: TIERS,
        onError: (e) => errors.push(e),
      });
      sources.push(s);
      return s;
    }

    async function fill(queue: string, count: number): Promise<void> {
      for (let i = 1; i <= count; i++) {
        await publishTo(admin, queue, `{"n":${i}}`, {
          messageId: `m${String(i).padStart(2, '0')}`,
        });
      }
    }

    it('acks a finished run with one multiple ack; finished ones past an unfinished one go alone, and a crash redelivers only the unfinished', async () => {
      const queue = await newQueue();
      const errors: unknown[] = [];
      const s = source(queue, errors);
      const inbox = createInbox();
      await fill(queue, 20);
      await s.start(inbox.onDelivery, { prefetch: 20 });
      const got = [];
      for (let i = 0; i < 20; i++) got.push((await inbox.next()).delivery);
      expect(got.map((d) => d.id)).toEqual(
        Array.from({ length: 20 }, (_, i) => `m${String(i + 1).padStart(2, '0')}`),
      );
      // 1-5 and 8-12 finish in one turn (8-12 first); 6, 7 and 13-20 are still running.
      for (const i of [11, 9, 7, 8, 10, 4, 0, 2, 1, 3]) await got[i]?.ack();
      await turns();
      expect(errors).toEqual([]);
      // One multiple ack for 1-5, and 8-12 one by one: none of them covers 6 or 7.
      expect(acks.filter(([, multiple]) => multiple)).toEqual([[5, true]]);
      expect(
        acks
          .filter(([, multiple]) => !multiple)
          .map(([tag]) => tag)
          .sort((a, b) => a - b),
      ).toEqual([8, 9, 10, 11, 12]);

      // The consumer dies with 6, 7 and 13-20 unfinished: exactly those come back.
      await s.close();
      expect(await readyCount(admin, queue)).toBe(10);
      const again = source(queue);
      const inbox2 = createInbox();
      await again.start(inbox2.onDelivery, { prefetch: 20 });
      const back = [];
      for (let i = 0; i < 10; i++) back.push(await inbox2.next());
      expect(await inbox2.arrivesWithin(300)).toBe(false);
      expect(ids(back)).toEqual([
        'm06',
        'm07',
        'm13',
        'm14',
        'm15',
        'm16',
        'm17',
        'm18',
        'm19',
        'm20',
      ]);
      for (const b of back) expect(b.delivery.deliveryCount).toBe(2);
      for (const b of back) await b.delivery.ack();
      await turns();
      expect(await readyCount(admin, queue)).toBe(0);
    });

    it('a slow low tag: higher ones are acked alone while it runs; once it finishes, one multiple ack covers it and nothing unfinished', async () => {
      const queue = await newQueue();
      const errors: unknown[] = [];
      const s = source(queue, errors);
      const inbox = createInbox();
      await fill(queue, 6);
      await s.start(inbox.onDelivery, { prefetch: 6 });
      const got = [];
      for (let i = 0; i < 6; i++) got.push((await inbox.next()).delivery);
      // 2-4 finish while 1 (slow) and 5-6 run.
      for (const i of [1, 2, 3]) await got[i]?.ack();
      await turns();
      expect(acks).toEqual([
        [2, false],
        [3, false],
        [4, false],
      ]);
      // 1 finishes: the run from the oldest on is 1-4 (2-4 acked already), so the multiple ack
      // names 1 itself: it cannot reach 5 or 6. RabbitMQ would close the channel on an unknown
      // tag; it stays open (no error, and 5 and 6 can still be acked on it).
      await got[0]?.ack();
      await turns();
      expect(acks.slice(3)).toEqual([[1, true]]);
      await got[5]?.ack();
      await turns();
      expect(acks.slice(4)).toEqual([[6, false]]);
      await got[4]?.ack();
      await turns();
      // 5 closes the gap: 1-6 all settled, one multiple ack on 5.
      expect(acks.slice(5)).toEqual([[5, true]]);
      expect(errors).toEqual([]);
      await s.close();
      expect(await readyCount(admin, queue)).toBe(0);
    });

    it('settles by other calls (retryLater, release) close gaps without being acked again', async () => {
      const queue = await newQueue();
      const errors: unknown[] = [];
      const s = source(queue, errors);
      const inbox = createInbox();
      await fill(queue, 5);
      await s.start(inbox.onDelivery, { prefetch: 5 });
      const got = [];
      for (let i = 0; i < 5; i++) got.push((await inbox.next()).delivery);
      await got[1]?.retryLater(100); // 2: copied to the delay tier, then acked on its own
      await got[2]?.release?.(); // 3: given back (nack, requeue)
      const redelivered = await inbox.next(); // 3 again, on the same channel (tag 6)
      expect(redelivered.delivery.id).toBe('m03');
      await got[0]?.ack();
      await got[3]?.ack();
      await turns();
      // 1-4 are settled or finished, 5 runs: one multiple ack on 4.
      expect(acks).toEqual([
        [2, false],
        [4, true],
      ]);
      await s.close(); // crash: 5 and the redelivered 3 are unfinished
      expect(errors).toEqual([]);
      const again = source(queue);
      const inbox2 = createInbox();
      await again.start(inbox2.onDelivery, { prefetch: 5 });
      const back = [await inbox2.next(), await inbox2.next(), await inbox2.next()];
      // 2 comes back from its delay tier; 3 and 5 because they never finished.
      expect(ids(back)).toEqual(['m02', 'm03', 'm05']);
      for (const b of back) await b.delivery.ack();
    });

    it('the connection dies with acks waiting for the burst: what did not finish comes back, and the new channel coalesces afresh', async () => {
      const queue = await newQueue();
      const proxy = await startTcpProxy(5672);
      try {
        const errors: unknown[] = [];
        const s = createAmqpSource({
          url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
          queue,
          delayTiers: TIERS,
          onError: (e) => errors.push(e),
        });
        sources.push(s);
        const inbox = createInbox();
        await fill(queue, 4);
        await s.start(inbox.onDelivery, { prefetch: 4 });
        const got = [];
        for (let i = 0; i < 4; i++) got.push((await inbox.next()).delivery);
        // 1 and 2 finish; in the same turn, before the burst goes out, the connection is cut.
        await got[0]?.ack();
        await got[1]?.ack();
        expect(proxy.dropAll()).toBeGreaterThanOrEqual(1);
        // The source reconnects: 3 and 4 (never finished) come back; 1 and 2 may too (their
        // ack was lost on the wire), which idempotency absorbs. Nothing is lost.
        const back: string[] = [];
        while (!(back.includes('m03') && back.includes('m04'))) {
          const next = await inbox.next(15_000);
          back.push(next.delivery.id);
          // Acked on the new channel, whose tags start again at 1.
          await next.delivery.ack();
        }
        while (await inbox.arrivesWithin(300)) await (await inbox.next()).delivery.ack();
        await turns();
        await s.close();
        expect(await readyCount(admin, queue)).toBe(0);
        for (const e of errors) expect(e).toBeInstanceOf(Error);
        expect(errors.every((e) => (e as { code?: unknown }).code !== 'PRECONDITION_FAILED')).toBe(
          true,
        );
      } finally {
        await proxy.close();
      }
    });

    it('through the consumer: out-of-order completion, then a crash: the finished are not redelivered, the slow one is', async () => {
      const queue = await newQueue();
      await fill(queue, 30);
      const s = source(queue);
      const effects = new Map<string, number>();
      let releaseSlow: () => void = () => {};
      const slowGate = new Promise<void>((resolve) => {
        releaseSlow = resolve;
      });
      let slowStarted: () => void = () => {};
      const slowRunning = new Promise<void>((resolve) => {
        slowStarted = resolve;
      });
      const acked: string[] = [];
      const consumer = createConsumer({
        source: s,
        concurrency: 8,
        prefetch: 16,
        idempotency: { store: createMemoryStore(), operation: 'acks' },
        key: 'id',
        async handler(message) {
          if (message.id === 'm03') {
            slowStarted();
            await slowGate; // never, in this consumer's life
          }
          effects.set(message.id, (effects.get(message.id) ?? 0) + 1);
        },
        onEvent(event) {
          if (event.type === 'acked') acked.push(event.id);
        },
      });
      await consumer.start();
      await slowRunning;
      await vi.waitFor(() => expect(acked.length).toBe(29), { timeout: 10_000 });
      await turns();
      expect(acks.every(([tag, multiple]) => !multiple || tag < 3)).toBe(true);
      // Crash: the connection goes away with 3 still running.
      await forceCloseConnections(`${RUN_ID}-${queue}`);
      await consumer.stop({ timeoutMs: 0 });
      releaseSlow();
      await s.close();
      expect(await readyCount(admin, queue)).toBe(1);
      const again = source(queue);
      const inbox = createInbox();
      await again.start(inbox.onDelivery, { prefetch: 5 });
      const back = await inbox.next();
      expect(back.delivery.id).toBe('m03');
      expect(await inbox.arrivesWithin(300)).toBe(false);
      await back.delivery.ack();
      expect([...effects.values()].every((count) => count === 1)).toBe(true);
    });
  },
);
