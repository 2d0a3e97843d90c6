export { idempotent } from './idempotent.js';
export {
  executeIdempotent,
  executeResolved,
  resolveIdentity,
  type ResolvedIdentity,
} from './execute.js';
export {
  resolveOptions,
  type ResolvedOptions,
  DEFAULT_TTL_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_RESULT_BYTES,
} from './options.js';
export { createDefaultCodec, defaultCodec } from './codec.js';
export { canonicalJson, NestedTooDeepError } from './canonical-json.js';
export { hashKey, fingerprintOf, deriveKey, sha256Hex, type KeyParts } from './hash.js';
export { validateKey, MAX_KEY_LENGTH } from './key.js';
export {
  ReplayedFailureError,
  encodeFailure,
  decodeFailure,
  type StoredFailure,
} from './failure.js';
export { MAX_STEP_NAME_LENGTH } from './context.js';
export { createMemoryStore, type MemoryStoreOptions } from '../stores/memory-store.js';
