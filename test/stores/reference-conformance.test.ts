import { systemClock } from '../../src/clock.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';
import { ReferenceStore } from './reference-store.js';

// The suite checked against the reference model, in both time modes it supports.
describeStoreConformance('reference model (fake clock)', async () => {
  const clock = new FakeClock();
  return { store: new ReferenceStore(clock), clock };
});

describeStoreConformance('reference model (real time)', async () => ({
  store: new ReferenceStore(systemClock),
}));
