import { InvalidArgumentError } from '../../errors.js';
import type { RedisLike } from './redis-like.js';
import { type RedisBatchOptions, createRedisStore, type RedisStore } from './redis-store.js';

/** Options of {@link openRedisStore}. */
export interface OpenRedisStoreOptions {
  /** Key prefix (default `reprocess:`, or the URL's `?prefix=`). */
  prefix?: string;
  /** A command not answered within this many ms fails with StoreUnavailableError (default 5000). */
  commandTimeoutMs?: number;
  /** Bound on opening a TCP connection (default 5000). */
  connectTimeoutMs?: number;
  /** `CLIENT SETNAME` of the connection, to find it in `CLIENT LIST` (default `reprocess`). */
  connectionName?: string;
  /** Batch concurrent begin and complete calls (default true, or the URL's `?batch=`). */
  batch?: boolean | RedisBatchOptions;
  /** Answer replays of finished records with a plain GET (default true, or the URL's `?readFirst=`). */
  readFirst?: boolean;
}

/**
 * Opens a Redis store from a URL (`redis://[user:password@]host[:port][/db][?prefix=p:&batch=false&readFirst=false]`,
 * `rediss://` for TLS) with its own ioredis client, which `close()` closes.
 *
 * The client is set up to fail closed instead of waiting:
 * - `maxRetriesPerRequest: 0`: when the connection drops, commands in flight and queued are
 *   rejected at once (StoreUnavailableError) instead of waiting through reconnection attempts;
 *   a command issued while reconnecting waits at most for the next connection attempt.
 * - `autoResendUnfulfilledCommands: false`: a script whose reply was lost is never sent again
 *   behind the caller's back (it may have run; the caller sees the failure and decides).
 * - `enableOfflineQueue: true`: commands issued while connecting (at start, after a restart of
 *   the server) wait for that connection, so the first call after the server is back works.
 * - `commandTimeout`: a bound on any single call, for a server that stops answering without
 *   closing the socket.
 * - reconnection retries forever, 50 ms doubling to at most 1 s apart.
 *
 * ioredis is loaded on first use, so `reprocess/redis` works with node-redis alone.
 */
export async function openRedisStore(
  url: string,
  options: OpenRedisStoreOptions = {},
): Promise<RedisStore> {
  const { redisUrl, prefix, batch, readFirst } = parseRedisUrl(url);
  const Redis = await loadIoredis();
  const client = new Redis(redisUrl, {
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: true,
    commandTimeout: options.commandTimeoutMs ?? 5000,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    connectionName: options.connectionName ?? 'reprocess',
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times - 1, 5), 1000),
  });
  // Failures reach callers as rejected commands; without a listener ioredis would also print
  // every reconnection error.
  client.on('error', () => {});
  const store = createRedisStore(client as unknown as RedisLike, {
    prefix: options.prefix ?? prefix ?? 'reprocess:',
    batch: options.batch ?? batch ?? true,
    readFirst: options.readFirst ?? readFirst ?? true,
  });
  return {
    ...store,
    async close() {
      await store.close?.();
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    },
  };
}

/** The store's own parameters of a URL, and the URL ioredis gets. */
interface ParsedRedisUrl {
  redisUrl: string;
  prefix?: string;
  batch?: boolean;
  readFirst?: boolean;
}

/** Splits the store's own parameters (`prefix`, `batch`, `readFirst`) from the URL ioredis gets. */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(`openRedisStore: not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new InvalidArgumentError(
      `openRedisStore: expected a redis:// or rediss:// URL, got ${JSON.stringify(parsed.protocol)}`,
    );
  }
  const prefix = parsed.searchParams.get('prefix');
  const batch = booleanParameter(parsed, 'batch');
  const readFirst = booleanParameter(parsed, 'readFirst');
  parsed.searchParams.delete('prefix');
  const result: ParsedRedisUrl = { redisUrl: parsed.toString() };
  if (prefix !== null) result.prefix = prefix;
  if (batch !== undefined) result.batch = batch;
  if (readFirst !== undefined) result.readFirst = readFirst;
  return result;
}

/** Takes the boolean parameter `name` out of `url` (true, 1, false or 0). */
function booleanParameter(url: URL, name: string): boolean | undefined {
  const value = url.searchParams.get(name);
  url.searchParams.delete(name);
  if (value === null) return undefined;
  if (!['true', '1', 'false', '0'].includes(value)) {
    throw new InvalidArgumentError(
      `openRedisStore: ${name} must be true, 1, false or 0, got ${JSON.stringify(value)}`,
    );
  }
  return value === 'true' || value === '1';
}

async function loadIoredis(): Promise<typeof import('ioredis').Redis> {
  try {
    return (await import('ioredis')).Redis;
  } catch (error) {
    throw new InvalidArgumentError(
      `openRedisStore needs the ioredis package (npm install ioredis): ${String(error)}`,
    );
  }
}
