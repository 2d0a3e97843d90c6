/**
 * The part of a Redis client the store uses, shaped after ioredis so that an ioredis `Redis`
 * or `Cluster` fits as it is. Structural: reprocess never imports a driver's types here.
 * For node-redis (`@redis/client`), wrap the client with {@link fromNodeRedis}.
 */
export interface RedisLike {
  /** `EVALSHA sha numKeys ...keysAndArgs`; rejects with a `NOSCRIPT` error when not cached. */
  evalsha(sha: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  /** `EVAL script numKeys ...keysAndArgs` (also caches the script for EVALSHA). */
  eval(script: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  /**
   * `GET key` (optional): with {@link time}, lets `begin` answer a replay of a finished record
   * with one plain read instead of a script call (see `readFirst` of the store).
   */
  get?(key: string): Promise<string | null>;
  /** `TIME` (optional), resolving to `[seconds, microseconds]`. */
  time?(): Promise<unknown>;
  /** `SCAN cursor MATCH pattern COUNT count`, resolving to `[nextCursor, keys]`. */
  scan(
    cursor: string,
    matchToken: 'MATCH',
    pattern: string,
    countToken: 'COUNT',
    count: number,
  ): Promise<[cursor: string, keys: string[]]>;
  /**
   * ioredis `Cluster.nodes('master')` (only read on a client with `isCluster`): a client per
   * master node. `SCAN` covers one node, so on a Cluster `list` and `purgeExpired` scan each.
   */
  nodes?(role: 'master'): ClusterNodeLike[];
}

/** One master of a Cluster, as ioredis `Cluster.nodes()` gives it: a client of that node. */
export interface ClusterNodeLike {
  scan: RedisLike['scan'];
  /** Where the node is; masters are scanned in order of `host:port`. */
  options?: { host?: string; port?: number };
}

/** The one method of a node-redis client that {@link fromNodeRedis} needs. */
export interface NodeRedisLike {
  sendCommand(args: string[]): Promise<unknown>;
}

/**
 * Adapts a node-redis (`@redis/client` 4 or later, RESP2) client to {@link RedisLike}.
 *
 * @example
 * ```ts
 * const client = await createClient({ url: 'redis://127.0.0.1:6379' }).connect();
 * const store = createRedisStore(fromNodeRedis(client));
 * ```
 */
export function fromNodeRedis(client: NodeRedisLike): RedisLike {
  return {
    evalsha: (sha, numKeys, ...rest) =>
      client.sendCommand(['EVALSHA', sha, String(numKeys), ...rest]),
    eval: (script, numKeys, ...rest) =>
      client.sendCommand(['EVAL', script, String(numKeys), ...rest]),
    get: (key) => client.sendCommand(['GET', key]) as Promise<string | null>,
    time: () => client.sendCommand(['TIME']),
    scan: async (cursor, matchToken, pattern, countToken, count) => {
      const reply = await client.sendCommand([
        'SCAN',
        cursor,
        matchToken,
        pattern,
        countToken,
        String(count),
      ]);
      return reply as [string, string[]];
    },
  };
}
