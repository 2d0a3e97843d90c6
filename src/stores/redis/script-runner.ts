import { createHash } from 'node:crypto';
import { RecordCorruptError, StoreUnavailableError } from '../../errors.js';
import type { RedisLike } from './redis-like.js';
import { SCRIPTS, type ScriptName } from './scripts.js';

/**
 * Runs the store's scripts with `EVALSHA`, falling back to `EVAL` on `NOSCRIPT` (a server that
 * restarted, failed over, or ran `SCRIPT FLUSH` has forgotten them; `EVAL` caches them again).
 * Done by hand rather than with ioredis `defineCommand` so any {@link RedisLike} works.
 */
export class ScriptRunner {
  private readonly shas: Record<ScriptName, string>;

  constructor(private readonly client: RedisLike) {
    const shas = {} as Record<ScriptName, string>;
    for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
      shas[name] = createHash('sha1').update(SCRIPTS[name]).digest('hex');
    }
    this.shas = shas;
  }

  /** Runs script `name` on the two keys of one record. Driver failures become reprocess errors. */
  run(name: ScriptName, keys: [string, string], args: string[]): Promise<unknown> {
    return this.runOn(name, 2, [keys[0], keys[1], ...args]);
  }

  /** Runs script `name` with `numKeys` keys first in `keysAndArgs`. */
  async runOn(name: ScriptName, numKeys: number, keysAndArgs: string[]): Promise<unknown> {
    try {
      return await this.client.evalsha(this.shas[name], numKeys, ...keysAndArgs);
    } catch (error) {
      if (!messageOf(error).includes('NOSCRIPT')) throw toStoreError(error, name);
    }
    try {
      return await this.client.eval(SCRIPTS[name], numKeys, ...keysAndArgs);
    } catch (error) {
      throw toStoreError(error, name);
    }
  }
}

/**
 * A record that the scripts refused to read (or a key of the wrong type under the prefix) is
 * corrupt; everything else (connection lost, timeout, OOM, READONLY, LOADING...) means the store
 * did not answer, so the caller fails closed.
 */
export function toStoreError(error: unknown, operation: string): Error {
  const message = messageOf(error);
  if (message.startsWith('REPROCESS_CORRUPT') || message.startsWith('WRONGTYPE')) {
    return new RecordCorruptError(`redis store: ${operation}: ${message}`, error);
  }
  // ioredis (with maxRetriesPerRequest 0) fails calls with this error when their connection
  // closed before the reply (killed, the server gone, or cut by openRedisStore's stall watch)
  // or when a connection could not be opened; its own message only names the option.
  if (error instanceof Error && error.name === 'MaxRetriesPerRequestError') {
    return new StoreUnavailableError(
      `redis store: ${operation} failed: the connection closed before a reply, or could not be opened (${message})`,
      error,
    );
  }
  return new StoreUnavailableError(`redis store: ${operation} failed: ${message}`, error);
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
