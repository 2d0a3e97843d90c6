import type { Channel, ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { AckTracker } from '../../src/consumer/amqp/amqp-acks.js';
import { isReprocessError } from '../../src/errors.js';

// The tracker's bookkeeping on its own; test/integration/amqp-acks.test.ts runs it against
// RabbitMQ. Here a channel that records what would go on the wire.

function message(tag: number): ConsumeMessage {
  return { fields: { deliveryTag: tag } } as unknown as ConsumeMessage;
}

function fakeChannel(fail = false) {
  const sent: Array<[number, boolean]> = [];
  const channel = {
    ack(m: ConsumeMessage, allUpTo?: boolean) {
      if (fail) throw new Error('Channel closed');
      sent.push([m.fields.deliveryTag, allUpTo === true]);
    },
  } as unknown as Channel;
  return { channel, sent };
}

function at<T>(list: readonly T[], i: number): T {
  const item = list[i];
  if (item === undefined) throw new Error(`no entry ${i}`);
  return item;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('AckTracker', () => {
  it('one multiple ack for a finished run, single acks past an unfinished one', async () => {
    const { channel, sent } = fakeChannel();
    const tracker = new AckTracker(
      channel,
      () => true,
      () => {},
    );
    const entries = [1, 2, 3, 4, 5, 6].map((tag) => tracker.track(message(tag), `m${tag}`));
    for (const i of [5, 0, 1, 3]) tracker.want(at(entries, i));
    await turn();
    expect(sent).toEqual([
      [2, true],
      [6, false], // in the order they finished
      [4, false],
    ]);
    tracker.done(at(entries, 2)); // 3 settled by a call of its own (a nack, a retry's ack)
    tracker.want(at(entries, 4));
    await turn();
    expect(sent.slice(3)).toEqual([[5, true]]);
  });

  it('a dead channel at flush time: every waiting ack is reported, none sent', async () => {
    const { channel, sent } = fakeChannel();
    const errors: unknown[] = [];
    let alive = true;
    const tracker = new AckTracker(
      channel,
      () => alive,
      (e) => errors.push(e),
    );
    const a = tracker.track(message(1), 'a');
    const b = tracker.track(message(2), 'b');
    tracker.want(a);
    tracker.want(b);
    alive = false;
    await turn();
    expect(sent).toEqual([]);
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => isReprocessError(e, 'AMQP_CHANNEL_LOST'))).toBe(true);
  });

  it('a channel that throws on send: reported for each ack of the burst', async () => {
    const { channel } = fakeChannel(true);
    const errors: unknown[] = [];
    const tracker = new AckTracker(
      channel,
      () => true,
      (e) => errors.push(e),
    );
    const entries = [1, 2, 3].map((tag) => tracker.track(message(tag), `m${tag}`));
    tracker.want(at(entries, 0));
    tracker.want(at(entries, 2));
    await turn();
    expect(errors).toHaveLength(2);
    expect(errors.every((e) => isReprocessError(e, 'AMQP_CHANNEL_LOST'))).toBe(true);
  });

  it('tags out of order: no multiple acks any more, each goes alone', async () => {
    const { channel, sent } = fakeChannel();
    const tracker = new AckTracker(
      channel,
      () => true,
      () => {},
    );
    const entries = [5, 3, 4].map((tag) => tracker.track(message(tag), `m${tag}`));
    for (const e of entries) tracker.want(e);
    await turn();
    expect(sent).toEqual([
      [5, false],
      [3, false],
      [4, false],
    ]);
  });

  it('a delivery that never finishes holds the run, not the others, at any length', async () => {
    const { channel, sent } = fakeChannel();
    const tracker = new AckTracker(
      channel,
      () => true,
      () => {},
    );
    tracker.track(message(1), 'stuck');
    for (let tag = 2; tag <= 5000; tag++) {
      const entry = tracker.track(message(tag), `m${tag}`);
      if (tag % 2 === 0) tracker.done(entry);
      else tracker.want(entry);
      if (tag % 100 === 0) await turn();
    }
    await turn();
    expect(sent.every(([, multiple]) => !multiple)).toBe(true);
    expect(sent).toHaveLength(2499);
  });
});
