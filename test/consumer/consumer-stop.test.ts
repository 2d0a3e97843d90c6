import { describe, expect, it } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import type { MessageSource } from '../../src/consumer/types.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';

describe('consumer stop', () => {
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
    await new Promise((resolve) => setTimeout(resolve, 20));
    releaseStop();
    const result = await stopping;
    expect(result).toEqual({ finished: 1, released: 0 });
    expect(memory.stats().acked).toBe(1);
  });
});
