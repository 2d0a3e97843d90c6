import { describe, expect, it } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import type { MessageSource } from '../../src/consumer/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';

describe('consumer stop', () => {
  it('a source whose start throws at once leaves the consumer idle, ready to start again', async () => {
    const memory = createMemorySource({ name: 'sync-throw' });
    let refuse = true;
    const source: MessageSource = {
      name: memory.name,
      start: (onDelivery, options) => {
        if (refuse) throw new Error('broker URL is malformed');
        return memory.start(onDelivery, options);
      },
      stop: () => memory.stop(),
      close: () => memory.close(),
    };
    const consumer = createConsumer({
      source,
      idempotency: { store: createMemoryStore() },
      handler: async () => undefined,
    });
    await expect(consumer.start()).rejects.toThrow('broker URL is malformed');
    expect(consumer.state).toBe('idle');
    refuse = false;
    await consumer.start();
    expect(consumer.state).toBe('running');
    await consumer.stop();
  });

  it('gives back the messages it had not started; the memory source delivers them again in publish order', async () => {
    const source = createMemorySource({ name: 'stop-order' });
    const store = createMemoryStore();
    const first: number[] = [];
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const consumer = createConsumer({
      source,
      concurrency: 1,
      prefetch: 5,
      idempotency: { store },
      handler: async (m) => {
        const n = (m.body as { n: number }).n;
        first.push(n);
        if (n === 1) await gate;
      },
    });
    await consumer.start();
    for (let n = 1; n <= 5; n++) source.publish({ id: `m${n}`, body: { n } });
    await new Promise((resolve) => setImmediate(resolve));
    const stopping = consumer.stop({ timeoutMs: 1_000 });
    open();
    expect(await stopping).toEqual({ finished: 1, released: 4, settling: 0 });
    expect(first).toEqual([1]);

    const again: number[] = [];
    const next = createConsumer({
      source,
      idempotency: { store },
      handler: async (m) => {
        again.push((m.body as { n: number }).n);
      },
    });
    await next.start();
    await new Promise((resolve) => setImmediate(resolve));
    expect(again).toEqual([2, 3, 4, 5]);
    await next.stop();
  });

  it('counts a handler that finishes while the source is stopping as finished', async () => {
    const memory = createMemorySource({ name: 'stop-count' });
    let releaseStop!: () => void;
    const stopGate = new Promise<void>((resolve) => {
      releaseStop = resolve;
    });
    // An adapter whose stop takes a while (a broker round trip).
    const source: MessageSource = {
      name: memory.name,
      start: (onDelivery, options) => memory.start(onDelivery, options),
      stop: async () => {
        await stopGate;
        await memory.stop();
      },
      close: () => memory.close(),
    };
    let finishHandler!: () => void;
    let started!: () => void;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    const consumer = createConsumer({
      source,
      idempotency: { store: createMemoryStore() },
      handler: async () => {
        started();
        await new Promise<void>((resolve) => {
          finishHandler = resolve;
        });
      },
    });
    await consumer.start();
    memory.publish({ id: 'm1', body: { n: 1 } });
    await handlerStarted;
    const stopping = consumer.stop({ timeoutMs: 5000 });
    finishHandler();
    await new Promise((resolve) => setImmediate(resolve));
    releaseStop();
    const result = await stopping;
    expect(result).toEqual({ finished: 1, released: 0, settling: 0 });
    expect(memory.stats().acked).toBe(1);
  });
});
