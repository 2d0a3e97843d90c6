import { describe, expect, it } from 'vitest';
import { ServerClock, timeReply } from '../../src/stores/redis/server-clock.js';

/** A TIME command whose replies the test hands out one by one. */
function timeCommand() {
  const pending: Array<{ resolve(reply: unknown): void; reject(error: Error): void }> = [];
  return {
    sent: () => pending.length,
    read: () =>
      new Promise<unknown>((resolve, reject) => {
        pending.push({ resolve, reject });
      }),
    answer: async (reply: unknown) => {
      pending.shift()?.resolve(reply);
      await Promise.resolve();
    },
    fail: async () => {
      pending.shift()?.reject(new Error('connection lost'));
      await Promise.resolve();
    },
  };
}

describe('ServerClock', () => {
  it('has no time before its first sample, and asks for one once', async () => {
    let now = 1000;
    const time = timeCommand();
    const clock = new ServerClock(time.read, 1000, () => now);
    expect(clock.atMost()).toBeUndefined();
    expect(clock.atMost()).toBeUndefined();
    expect(time.sent()).toBe(1); // one TIME in flight, not one per call
    now = 1005; // the reply arrives 5 ms after the command left
    await time.answer(['1700000000', '250000']);
    // The server read its clock at some point in those 5 ms: now it is at most the sample
    // plus all the time since the command was sent.
    expect(clock.atMost()).toBe(1_700_000_000_250 + 5);
    now = 1500;
    expect(clock.atMost()).toBe(1_700_000_000_250 + 500);
    expect(time.sent()).toBe(0);
  });

  it('stops trusting a sample older than maxAge and asks again', async () => {
    let now = 0;
    const time = timeCommand();
    const clock = new ServerClock(time.read, 1000, () => now);
    clock.atMost();
    await time.answer([100, 0]);
    now = 1000;
    expect(clock.atMost()).toBe(101_000);
    now = 1001;
    expect(clock.atMost()).toBeUndefined();
    expect(time.sent()).toBe(1);
    await time.answer([200, 999_999]);
    expect(clock.atMost()).toBe(Math.ceil(200_999.999));
  });

  it('keeps no sample from a failed read or a reply that is not a time, and asks again', async () => {
    const time = timeCommand();
    const clock = new ServerClock(time.read, 1000, () => 0);
    clock.atMost();
    await time.fail();
    expect(clock.atMost()).toBeUndefined();
    await time.answer(['not', 'time']);
    expect(clock.atMost()).toBeUndefined();
    await time.answer(['5', '1000000']);
    expect(clock.atMost()).toBeUndefined();
    await time.answer(['5', '0']);
    expect(clock.atMost()).toBe(5000);
  });
});

describe('timeReply', () => {
  it('reads TIME as epoch milliseconds and refuses anything else', () => {
    expect(timeReply(['1700000000', '123456'])).toBe(1_700_000_000_123.456);
    expect(timeReply([1, 0])).toBe(1000);
    for (const bad of [null, 'x', ['1'], ['1', '2', '3'], ['-1', '0'], ['1', '-1'], ['a', '0']]) {
      expect(timeReply(bad)).toBeUndefined();
    }
  });
});
