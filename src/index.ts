export * from './errors.js';
export { type Clock, systemClock, sleep } from './clock.js';
export { type Random, seededRandom } from './random.js';
export { type Duration, toMs } from './duration.js';
export * from './retry/backoff.js';
export * from './retry/jitter.js';
export type * from './retry/types.js';
export type * from './idempotency/store.js';
export type * from './idempotency/types.js';
