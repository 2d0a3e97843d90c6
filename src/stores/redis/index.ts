export {
  READ_FIRST_MARGIN_MS,
  createRedisStore,
  type RedisBatchOptions,
  type RedisStore,
  type RedisStoreOptions,
} from './redis-store.js';
export { openRedisStore, type OpenRedisStoreOptions } from './open-redis-store.js';
export { fromNodeRedis, type NodeRedisLike, type RedisLike } from './redis-like.js';
