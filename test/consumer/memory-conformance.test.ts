import { createMemorySource } from '../../src/consumer/memory-source.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { describeConsumerConformance } from '../helpers/consumer-conformance.js';

describeConsumerConformance('memory source', async ({ id }) => {
  const clock = new FakeClock();
  const source = createMemorySource({ name: `orders-${id}`, clock });
  return {
    source,
    dlq: source.deadLetters,
    async publish(message) {
      source.publish(message);
    },
    store: createMemoryStore({ clock }),
    clock,
    advance: (ms) => clock.advance(ms),
    async crash() {
      source.crash();
    },
    async dropConnection() {
      source.interrupt();
    },
    cleanup: () => source.close(),
  };
});
