import { systemClock } from '../../src/clock.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';

// No restart: the memory store keeps nothing across store objects, so that case is skipped.
describeStoreConformance('memory (fake clock)', async () => {
  const clock = new FakeClock();
  return { store: createMemoryStore({ clock }), clock };
});

describeStoreConformance('memory (real time)', async () => ({
  store: createMemoryStore({ clock: systemClock }),
}));
