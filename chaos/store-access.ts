import type { IdempotencyStore } from '../src/idempotency/store.js';
import { openPostgresStore } from '../src/stores/postgres/index.js';
import { openRedisStore } from '../src/stores/redis/index.js';

/**
 * How a process of the run reaches the idempotency store: always through the run's TCP
 * relay (so the run can kill the connections and take the store away), under a connection
 * name the run can find on the server (`CLIENT LIST`, `pg_stat_activity.application_name`).
 */
export type StoreSpec =
  | { kind: 'redis'; url: string; prefix: string; connectionName: string }
  | { kind: 'postgres'; url: string; schema: string; table: string; connectionName: string };

/**
 * Opens the store with the library's own fail-closed openers: a dead connection fails the
 * call in flight (StoreUnavailableError), nothing waits through reconnection attempts, and
 * the next call gets a new connection.
 */
export async function openChaosStore(spec: StoreSpec): Promise<IdempotencyStore> {
  if (spec.kind === 'redis') {
    return openRedisStore(spec.url, {
      prefix: spec.prefix,
      connectionName: spec.connectionName,
      commandTimeoutMs: 3000,
      connectTimeoutMs: 2000,
    });
  }
  const url = new URL(spec.url);
  url.searchParams.set('application_name', spec.connectionName);
  return openPostgresStore(url.toString(), {
    schema: spec.schema,
    table: spec.table,
    poolSize: 4,
    connectTimeoutMs: 2000,
    queryTimeoutMs: 5000,
  });
}

/** A store seen through the run's instruments; the store itself is untouched. */
export interface GuardedStore {
  readonly store: IdempotencyStore;
  /**
   * When the begin that last acquired `key` was answered (epoch ms). No answer can come from
   * a store that is unreachable: an effect guarded by a begin answered during an outage would
   * be an unguarded run (see ANSWER_SLACK_MS in invariants.ts).
   */
  guardedSince(key: string): number | undefined;
  /**
   * Holds the heartbeats of `key` until `until` settles, then sends them as they were: the
   * holder is stalled and its lease renewals do not get through, so the lease ends while
   * its handler still runs (a zombie).
   */
  holdHeartbeats(key: string, until: Promise<void>): void;
}

/** Wraps `store` with the instruments of {@link GuardedStore}; every call still reaches `store`. */
export function guardStore(store: IdempotencyStore): GuardedStore {
  const answeredAt = new Map<string, number>();
  const held = new Map<string, Promise<void>>();
  const wrapped: IdempotencyStore = {
    name: store.name,
    async begin(key, fingerprint, leaseMs, ttlMs) {
      const result = await store.begin(key, fingerprint, leaseMs, ttlMs);
      if (result.kind === 'acquired') answeredAt.set(key, Date.now());
      return result;
    },
    complete: (key, token, result, ttlMs) => store.complete(key, token, result, ttlMs),
    fail: (key, token, error, ttlMs) => store.fail(key, token, error, ttlMs),
    release: (key, token, ttlMs) => store.release(key, token, ttlMs),
    async heartbeat(key, token, leaseMs) {
      const hold = held.get(key);
      if (hold !== undefined) await hold;
      return store.heartbeat(key, token, leaseMs);
    },
    saveStep: (key, token, name, result) => store.saveStep(key, token, name, result),
    get: (key) => store.get(key),
    delete: (key) => store.delete(key),
    list: (options) => store.list(options),
    purgeExpired: (options) => store.purgeExpired(options),
    close: async () => {
      await store.close?.();
    },
  };
  return {
    store: wrapped,
    guardedSince: (key) => answeredAt.get(key),
    holdHeartbeats(key, until) {
      const done = until.then(
        () => undefined,
        () => undefined,
      );
      held.set(key, done);
      void done.then(() => {
        if (held.get(key) === done) held.delete(key);
      });
    },
  };
}
