import { redactUrl } from '../../redact-url.js';
import { InvalidArgumentError, StoreUnavailableError } from '../../errors.js';
import type { RedisLike } from './redis-like.js';
import { type RedisBatchOptions, createRedisStore, type RedisStore } from './redis-store.js';
import { boundStalls } from './stall-watch.js';

/** Options of {@link openRedisStore}. */
export interface OpenRedisStoreOptions {
  /** Key prefix (default `reprocess:`, or the URL's `?prefix=`). */
  prefix?: string;
  /**
   * A call fails with StoreUnavailableError once the server has answered nothing for this many
   * ms (at most a quarter more) while it waited, and the connection is cut and reopened
   * (default 5000). On a Cluster, each command is bounded alone (ioredis `commandTimeout`).
   */
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
 * `rediss://` for TLS) with its own ioredis client, which `close()` closes. With
 * `?cluster=true` the client is an ioredis `Cluster`: the URL's host is the first seed node,
 * each `&node=host:port` adds one, and user, password and TLS apply to every node.
 *
 * The client is set up to fail closed instead of waiting:
 * - `maxRetriesPerRequest: 0`: when the connection drops, commands in flight and queued are
 *   rejected at once (StoreUnavailableError) instead of waiting through reconnection attempts;
 *   a command issued while reconnecting waits at most for the next connection attempt.
 * - `autoResendUnfulfilledCommands: false`: a script whose reply was lost is never sent again
 *   behind the caller's back (it may have run; the caller sees the failure and decides).
 * - `enableOfflineQueue: true`: commands issued while connecting (at start, after a restart of
 *   the server) wait for that connection, so the first call after the server is back works.
 * - a bound on how long a call waits for a server that stops answering without closing the
 *   socket (`commandTimeoutMs`): on a standalone server a stall watch (one timer for
 *   the client, not one per command), on a Cluster ioredis' `commandTimeout`.
 * - reconnection retries forever, 50 ms doubling to at most 1 s apart.
 *
 * ioredis is loaded on first use, so `reprocess/redis` works with node-redis alone.
 */
export async function openRedisStore(
  url: string,
  options: OpenRedisStoreOptions = {},
): Promise<RedisStore> {
  const { redisUrl, prefix, batch, readFirst, cluster } = parseRedisUrl(url);
  const database = databaseOf(new URL(redisUrl));
  const ioredis = await loadIoredis();
  const connectTimeout = options.connectTimeoutMs ?? 5000;
  const commandTimeout = options.commandTimeoutMs ?? 5000;
  if (
    typeof commandTimeout !== 'number' ||
    !(commandTimeout > 0 && commandTimeout <= 2 ** 31 - 1)
  ) {
    throw new InvalidArgumentError(
      `openRedisStore: commandTimeoutMs must be a number of ms from 1 to 2147483647, got ${String(commandTimeout)}`,
    );
  }
  const failClosed = {
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout,
    connectionName: options.connectionName ?? 'reprocess',
  };
  const retry = (times: number) => Math.min(50 * 2 ** Math.min(times - 1, 5), 1000);
  const client =
    cluster === undefined
      ? new ioredis.Redis(redisUrl, {
          ...failClosed,
          enableOfflineQueue: true,
          retryStrategy: retry,
        })
      : new ioredis.Cluster(cluster.nodes, {
          // A Cluster keeps queued calls through every reconnection attempt, with no bound:
          // without the queue, a call made while the cluster cannot be reached fails at once
          // (fail closed). Opening waits for the first connection instead (below).
          enableOfflineQueue: false,
          // A Cluster sends a call again, after retryDelayOnFailover (100 ms), when its
          // connection closed before the reply, so a script that had run may run a second
          // time. The fencing answers that second run: a begin finds its own live lease (the
          // caller sees the operation in progress until the lease ends), a complete finds the
          // record completed (lease_lost, although the result is stored). Neither runs the
          // operation again. Turning the resend off (0) made calls fail just after opening:
          // node connections closed and reopened right after the cluster became ready.
          clusterRetryStrategy: retry,
          slotsRefreshTimeout: connectTimeout,
          redisOptions: {
            ...failClosed,
            // A Cluster has a connection per node: one node may stall while others answer.
            commandTimeout,
            ...(cluster.username === undefined ? {} : { username: cluster.username }),
            ...(cluster.password === undefined ? {} : { password: cluster.password }),
            ...(cluster.tls ? { tls: {} } : {}),
          },
        });
  // Failures reach callers as rejected commands; without a listener ioredis would also print
  // every reconnection error. One failure is the store's own: ioredis reports a SELECT the
  // server refused (a database past its `databases`) as an event, and then goes on in database
  // 0, where another application's records may be. The client is closed instead: every call
  // fails closed, and an open that meets it throws.
  let unselected: Error | undefined;
  client.on('error', (error: unknown) => {
    if ((error as { command?: { name?: unknown } } | null)?.command?.name !== 'select') return;
    unselected = error as Error;
    client.disconnect();
  });
  let watch: { close(): void } | undefined;
  let store: RedisStore;
  try {
    if (cluster !== undefined) await firstOf(client, ['ready'], connectTimeout);
    else if (database !== 0) {
      await firstOf(client, ['ready', 'error'], connectTimeout);
      if (unselected !== undefined) {
        throw new InvalidArgumentError(
          `openRedisStore: the server refused database ${database} (${unselected.message}); check the URL's /db`,
        );
      }
    }
    // A standalone client is watched for stalls, at no cost per call. A Cluster (a connection per
    // node: one node may stall while others answer) bounds each command with ioredis' own
    // commandTimeout (set above), and so does a client without the queue the watch reads.
    watch =
      cluster === undefined
        ? boundStalls(client as unknown as Parameters<typeof boundStalls>[0], commandTimeout)
        : undefined;
    store = createRedisStore(client as unknown as RedisLike, {
      prefix: options.prefix ?? prefix ?? 'reprocess:',
      batch: options.batch ?? batch ?? true,
      readFirst: options.readFirst ?? readFirst ?? true,
    });
  } catch (error) {
    // Nothing opened may outlive a failed open (a bad prefix or batch option, a refused
    // database, a cluster that never came up): it would keep the process alive.
    watch?.close();
    client.disconnect();
    throw error;
  }
  return {
    ...store,
    async close() {
      await store.close?.();
      watch?.close();
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    },
  };
}

/**
 * Waits until the client emits one of `events` (`ready`; for a standalone client also `error`:
 * an unreachable server, a refused SELECT), at most `ms`. It is not an error to stop waiting:
 * the client keeps trying, and calls fail closed until it is ready.
 */
function firstOf(
  client: {
    status: string;
    once(event: string, listener: () => void): unknown;
    off(event: string, listener: () => void): unknown;
  },
  events: readonly string[],
  ms: number,
): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const event of events) client.off(event, done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref?.();
    for (const event of events) client.once(event, done);
  });
}

/** Largest database number accepted in a URL (Redis' own bound on `databases`). */
const MAX_DATABASE = 2 ** 31 - 1;

/**
 * The database of a redis:// URL: its path (`/3`) or its `?db=` (which ioredis also reads),
 * 0 when neither is given. Anything that is not a database number is refused here: ioredis
 * would send it to SELECT, and go on in database 0 when the server refuses it.
 */
function databaseOf(url: URL): number {
  const fromPath = url.pathname.replace(/^\//, '');
  const fromQuery = url.searchParams.get('db');
  let database = 0;
  for (const [text, where] of [
    [fromPath, `the path /${fromPath}`],
    [fromQuery, `?db=${fromQuery}`],
  ] as const) {
    if (text === null || text === '') continue;
    const value = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
    if (!(value <= MAX_DATABASE)) {
      throw new InvalidArgumentError(
        `openRedisStore: the database must be a number from 0 to ${MAX_DATABASE}, got ${where}`,
      );
    }
    if (fromPath !== '' && fromQuery !== null && Number(fromPath) !== value) {
      throw new InvalidArgumentError(
        `openRedisStore: the URL names two databases, /${fromPath} and ?db=${fromQuery}`,
      );
    }
    database = value;
  }
  return database;
}

/** The store's own parameters of a URL, and the URL ioredis gets. */
interface ParsedRedisUrl {
  redisUrl: string;
  prefix?: string;
  batch?: boolean;
  readFirst?: boolean;
  /** With `?cluster=true`: the seed nodes and what every node connection needs. */
  cluster?: RedisClusterSeeds;
}

/** The seeds of an ioredis `Cluster` from a `?cluster=true` URL. */
export interface RedisClusterSeeds {
  nodes: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

/** Splits the store's own parameters (`prefix`, `batch`, `readFirst`) from the URL ioredis gets. */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(`openRedisStore: not a URL: ${JSON.stringify(redactUrl(url))}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new InvalidArgumentError(
      `openRedisStore: expected a redis:// or rediss:// URL, got ${JSON.stringify(parsed.protocol)}`,
    );
  }
  const prefix = parsed.searchParams.get('prefix');
  const batch = booleanParameter(parsed, 'batch');
  const readFirst = booleanParameter(parsed, 'readFirst');
  const cluster = booleanParameter(parsed, 'cluster');
  const extraNodes = parsed.searchParams.getAll('node');
  parsed.searchParams.delete('prefix');
  parsed.searchParams.delete('node');
  const database = databaseOf(parsed);
  const result: ParsedRedisUrl = { redisUrl: parsed.toString() };
  if (prefix !== null) result.prefix = prefix;
  if (batch !== undefined) result.batch = batch;
  if (readFirst !== undefined) result.readFirst = readFirst;
  if (cluster === true) {
    if (database !== 0) {
      throw new InvalidArgumentError(
        `openRedisStore: a Redis Cluster has only database 0, got database ${database} in a cluster=true URL`,
      );
    }
    result.cluster = clusterSeeds(parsed, extraNodes);
  } else if (extraNodes.length > 0) {
    throw new InvalidArgumentError(
      'openRedisStore: node= adds a seed node of a Redis Cluster; add cluster=true to the URL',
    );
  }
  return result;
}

function clusterSeeds(url: URL, extraNodes: string[]): RedisClusterSeeds {
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && db !== '0') {
    throw new InvalidArgumentError(
      `openRedisStore: a Redis Cluster has only database 0, got /${db} in a cluster=true URL`,
    );
  }
  if (url.hostname === '') {
    throw new InvalidArgumentError('openRedisStore: a cluster=true URL needs a host');
  }
  const port = url.port === '' ? 6379 : Number(url.port);
  if (port < 1) {
    throw new InvalidArgumentError(`openRedisStore: port must be from 1 to 65535, got ${port}`);
  }
  const first = { host: bareHost(url.hostname), port };
  const seeds: RedisClusterSeeds = {
    nodes: [first, ...extraNodes.map(hostPort)],
    tls: url.protocol === 'rediss:',
  };
  if (url.username !== '') seeds.username = decoded(url.username, 'user');
  if (url.password !== '') seeds.password = decoded(url.password, 'password');
  return seeds;
}

/** A percent-encoded part of the URL, decoded (a stray `%` is a clear error, not a URIError). */
function decoded(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new InvalidArgumentError(
      `openRedisStore: the ${what} in the URL is not valid percent-encoding (write % as %25)`,
    );
  }
}

/** `host:port` (or `[v6]:port`) of a `node=` parameter. */
function hostPort(text: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/?#@\s]+):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[2]) : 0;
  if (!match || port < 1 || port > 65_535) {
    throw new InvalidArgumentError(
      `openRedisStore: node must be host:port with a port from 1 to 65535, got ${JSON.stringify(text)}`,
    );
  }
  return { host: bareHost(match[1] as string), port };
}

/** An IPv6 host without the brackets a URL puts around it. */
function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
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

async function loadIoredis(): Promise<{
  Redis: typeof import('ioredis').Redis;
  Cluster: typeof import('ioredis').Cluster;
}> {
  try {
    const { Redis, Cluster } = await import('ioredis');
    return { Redis, Cluster };
  } catch (error) {
    // A missing driver is the store's absence, as for the other stores: StoreUnavailableError
    // (exit 1 in the CLI), not an argument error (exit 2, "usage").
    throw new StoreUnavailableError(
      'openRedisStore: the "ioredis" package is not installed (npm install ioredis)',
      error,
    );
  }
}
