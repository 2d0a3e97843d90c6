/**
 * `setInterval` as it was when this module loaded, unref'd: a test that fakes timers must not
 * freeze the watch of a store it did not mean to, and the watch must not keep a process alive.
 */
const setIntervalAtLoad = globalThis.setInterval;
const clearIntervalAtLoad = globalThis.clearInterval;
const realEvery: Every = (tick, ms) => {
  const timer = setIntervalAtLoad(tick, ms);
  timer.unref?.();
  return () => clearIntervalAtLoad(timer);
};

/** Calls `tick` every `ms` until the returned function is called. */
export type Every = (tick: () => void, ms: number) => () => void;

/** What the watch reads of an ioredis `Redis` client (both are public properties of it). */
export interface WatchedConnection {
  /** The commands written to the connection and not yet answered, oldest first. */
  commandQueue?: { peekFront(): unknown } | undefined;
  /** The socket of the current connection. */
  stream?: { destroy(): void } | undefined;
}

/**
 * Cuts a connection whose server stopped answering, so that the calls waiting on it fail
 * closed (StoreUnavailableError) and the client connects again: the bound `openRedisStore`
 * puts on a call (`commandTimeoutMs`) on a standalone server.
 *
 * ioredis' own `commandTimeout` starts and clears a timer for every command, a cost paid on
 * every call (0.3-0.8 µs of CPU a command, measured on this project's machine), and it leaves
 * a half-open connection open for ever, each command timing out on it in turn. The watch costs
 * calls nothing: it looks at the connection four times per bound. A server answers the
 * commands of one connection in order, so the oldest unanswered one is the first of the queue,
 * and the server has stopped answering when that first command stays the same for the whole
 * bound. The watch then destroys the socket, exactly what a server that closed the connection
 * would have done: with `maxRetriesPerRequest: 0` ioredis fails every command in flight or
 * queued at once, and reconnects. As with any lost reply, the server may have run a command
 * that failed this way.
 *
 *   queue head:  A ─────────────────────────────────────────── (A unanswered) ──► socket destroyed
 *   ticks:        |  first seen  |   1   |   2   |   3   |   4
 *                                 <────────── the bound, at least ─────────>
 *
 * A command fails between the bound and a quarter more after it became the oldest. One that
 * waits behind others while the server keeps answering is not cut: the server is slow, not
 * gone.
 */
export class StallWatch {
  /** The oldest command at the last tick, and for how many ticks in a row it has been. */
  private oldest: unknown;
  private ticks = 0;
  private readonly stop: () => void;

  constructor(
    private readonly connection: WatchedConnection,
    timeoutMs: number,
    every: Every = realEvery,
  ) {
    this.stop = every(() => this.tick(), timeoutMs / 4);
  }

  /** Whether `connection` shows the queue the watch reads (ioredis `Redis` does). */
  static canWatch(connection: WatchedConnection): boolean {
    return typeof connection.commandQueue?.peekFront === 'function';
  }

  /** Stops watching (the client is being closed). */
  close(): void {
    this.stop();
  }

  private tick(): void {
    const oldest = this.connection.commandQueue?.peekFront();
    if (oldest === undefined || oldest !== this.oldest) {
      this.oldest = oldest;
      this.ticks = 0;
      return;
    }
    if (++this.ticks < 4) return;
    this.oldest = undefined;
    this.ticks = 0;
    this.connection.stream?.destroy();
  }
}

/**
 * Bounds how long calls on an ioredis `Redis` client wait for a server that stopped answering:
 * with a {@link StallWatch} where the client shows its queue (returned, to be closed with the
 * client), else with ioredis' own `commandTimeout`, set on the client's options (read at every
 * command).
 */
export function boundStalls(
  client: WatchedConnection & { options: object },
  timeoutMs: number,
  every?: Every,
): StallWatch | undefined {
  if (StallWatch.canWatch(client)) return new StallWatch(client, timeoutMs, every);
  Object.assign(client.options, { commandTimeout: timeoutMs });
  return undefined;
}
