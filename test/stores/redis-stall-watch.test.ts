import { describe, expect, it } from 'vitest';
import {
  boundStalls,
  StallWatch,
  type WatchedConnection,
} from '../../src/stores/redis/stall-watch.js';

/** A connection whose queue the test fills and empties, and a timer the test ticks by hand. */
function setup(timeoutMs = 1000) {
  const queue: object[] = [];
  let destroyed = 0;
  const connection: WatchedConnection = {
    commandQueue: { peekFront: () => queue[0] },
    stream: {
      destroy: () => {
        destroyed++;
        queue.length = 0; // ioredis fails every queued command when its socket closes
      },
    },
  };
  let tick: (() => void) | undefined;
  let interval: number | undefined;
  let stopped = false;
  const watch = new StallWatch(connection, timeoutMs, (run, ms) => {
    tick = run;
    interval = ms;
    return () => {
      stopped = true;
    };
  });
  return {
    watch,
    queue,
    interval: () => interval,
    stopped: () => stopped,
    destroyed: () => destroyed,
    ticks: (n: number) => {
      for (let i = 0; i < n; i++) tick?.();
    },
  };
}

describe('StallWatch', () => {
  it('looks four times per bound', () => {
    expect(setup(5000).interval()).toBe(1250);
  });

  it('cuts the connection once the same command stayed first for four more ticks', () => {
    const s = setup();
    s.queue.push({ name: 'A' }, { name: 'B' });
    s.ticks(1); // A first seen (it may have been sent just before)
    s.ticks(3);
    expect(s.destroyed()).toBe(0);
    s.ticks(1); // four ticks after it was first seen: at least the bound
    expect(s.destroyed()).toBe(1);
    expect(s.queue).toEqual([]);
  });

  it('does not cut a server that keeps answering, however long the queue', () => {
    const s = setup();
    for (let i = 0; i < 20; i++) s.queue.push({ i });
    for (let i = 0; i < 19; i++) {
      s.ticks(3);
      s.queue.shift(); // one answer every three ticks: slow, not gone
    }
    expect(s.destroyed()).toBe(0);
  });

  it('starts counting again for a command sent after an idle spell', () => {
    const s = setup();
    s.ticks(10); // nothing in flight
    s.queue.push({ name: 'A' });
    s.ticks(4);
    expect(s.destroyed()).toBe(0);
    s.ticks(1);
    expect(s.destroyed()).toBe(1);
  });

  it('after a cut, watches the next connection from scratch', () => {
    const s = setup();
    s.queue.push({ name: 'A' });
    s.ticks(5);
    expect(s.destroyed()).toBe(1);
    s.queue.push({ name: 'B' });
    s.ticks(4);
    expect(s.destroyed()).toBe(1);
    s.ticks(1);
    expect(s.destroyed()).toBe(2);
  });

  it('tells whether a client shows the queue it reads, and stops its timer on close', () => {
    expect(StallWatch.canWatch({ commandQueue: { peekFront: () => undefined } })).toBe(true);
    expect(StallWatch.canWatch({})).toBe(false);
    const s = setup();
    s.watch.close();
    expect(s.stopped()).toBe(true);
  });

  it('bounds a client that shows its queue with a watch, any other with its own commandTimeout', () => {
    const manual = () => () => {};
    const watched = { commandQueue: { peekFront: () => undefined }, options: {} };
    const watch = boundStalls(watched, 5000, manual);
    expect(watch).toBeInstanceOf(StallWatch);
    expect(watched.options).toEqual({});
    const other = { options: { port: 6379 } };
    expect(boundStalls(other, 5000, manual)).toBeUndefined();
    expect(other.options).toEqual({ port: 6379, commandTimeout: 5000 });
  });
});
