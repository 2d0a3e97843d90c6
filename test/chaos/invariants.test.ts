/**
 * The invariant checker of the chaos run: a bug here would hide the very duplicates and
 * losses the run exists to find, so it is checked on its own, on made-up effects and
 * dead letters.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkHttp, checkPhase } from '../../chaos/invariants.js';
import type { OrderBody } from '../../chaos/plan.js';
import type { QuarantinedMessage, QuarantineHistory } from '../../src/consumer/types.js';

const order = (id: string, kind: OrderBody['kind'] = 'normal'): OrderBody => ({
  id,
  kind,
  stall: false,
  amount: 1,
});

const group = (message_id: string, step: string, n = 1, phase = 'amqp') => ({
  phase,
  message_id,
  step,
  n,
});

function dead(id: string, history: Partial<QuarantineHistory> = {}): QuarantinedMessage {
  return {
    id: `${id}.1`,
    body: Buffer.from(JSON.stringify(order(id, 'poison'))),
    headers: {},
    history: {
      attempts: 1,
      firstFailureAt: 1000,
      lastFailureAt: 1000,
      lastError: { name: 'NonRetryableError', code: 'POISON_ORDER', message: 'never' },
      reason: 'non_retryable',
      source: 'q',
      idempotencyKey: id,
      quarantinedAt: 1001,
      ...history,
    },
  };
}

const facts = (
  messages: OrderBody[],
  deadLetters: QuarantinedMessage[] = [],
  keyedByOrder = true,
) => ({ phase: 'amqp', source: 'q', messages, deadLetters, keyedByOrder });

describe('checkPhase', () => {
  it('counts a message with both effects once as done', () => {
    const v = checkPhase(facts([order('a')]), [group('a', 'reserve'), group('a', 'ship')]);
    expect(v).toMatchObject({ done: 1, lost: 0, duplicateEffects: 0, quarantined: 0 });
  });

  it('counts every extra row of a step as a duplicate effect', () => {
    const v = checkPhase(facts([order('a'), order('b')]), [
      group('a', 'reserve', 3),
      group('a', 'ship'),
      group('b', 'reserve'),
      group('b', 'ship', 2),
    ]);
    expect(v.duplicateEffects).toBe(3);
    expect(v.done).toBe(2);
  });

  it('a message with one effect of two and no dead letter is lost', () => {
    const v = checkPhase(facts([order('a'), order('b')]), [
      group('a', 'reserve'),
      group('b', 'reserve'),
      group('b', 'ship'),
    ]);
    expect(v.lost).toBe(1);
    expect(v.lostIds).toEqual(['a']);
  });

  it('a quarantined message with its history is not lost; one with a bad history is', () => {
    const good = checkPhase(facts([order('p', 'poison')], [dead('p')]), []);
    expect(good).toMatchObject({ quarantined: 1, lost: 0, badHistories: [] });

    for (const broken of [
      { source: 'elsewhere' },
      { attempts: 0 },
      { idempotencyKey: 'other' },
      { lastFailureAt: 5000 },
      { reason: 'because' as QuarantineHistory['reason'] },
    ]) {
      const bad = checkPhase(facts([order('p', 'poison')], [dead('p', broken)]), []);
      expect(bad.lost, JSON.stringify(broken)).toBe(1);
      expect(bad.badHistories).toHaveLength(1);
    }
  });

  it('the baseline keys are random: the history key is not compared', () => {
    const v = checkPhase(
      facts([order('p', 'poison')], [dead('p', { idempotencyKey: 'random-uuid' })], false),
      [],
    );
    expect(v).toMatchObject({ quarantined: 1, lost: 0 });
  });

  it('effects of other phases are ignored, unknown ones are stray', () => {
    const v = checkPhase(facts([order('a')]), [
      group('a', 'reserve'),
      group('a', 'ship'),
      group('a', 'ship', 4, 'nats'),
      group('zz', 'ship'),
      group('a', 'refund'),
    ]);
    expect(v).toMatchObject({ done: 1, duplicateEffects: 0, strayEffects: 2 });
  });

  it('property: duplicates are the rows beyond one, and done + quarantined + lost = messages', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            reserve: fc.nat({ max: 3 }),
            ship: fc.nat({ max: 3 }),
            quarantined: fc.boolean(),
          }),
          { maxLength: 30 },
        ),
        (rows) => {
          const messages = rows.map((_, i) => order(`m${i}`));
          const groups = rows.flatMap((r, i) => [
            ...(r.reserve > 0 ? [group(`m${i}`, 'reserve', r.reserve)] : []),
            ...(r.ship > 0 ? [group(`m${i}`, 'ship', r.ship)] : []),
          ]);
          const deadLetters = rows.flatMap((r, i) => (r.quarantined ? [dead(`m${i}`)] : []));
          const v = checkPhase(facts(messages, deadLetters), groups);
          const extra = rows.reduce(
            (a, r) => a + Math.max(0, r.reserve - 1) + Math.max(0, r.ship - 1),
            0,
          );
          expect(v.duplicateEffects).toBe(extra);
          expect(v.done + v.quarantined + v.lost).toBe(rows.length);
          expect(v.done).toBe(rows.filter((r) => r.reserve > 0 && r.ship > 0).length);
        },
      ),
    );
  });
});

describe('checkHttp', () => {
  it('one row per operation and an answer for each client', () => {
    const ops = ['h1', 'h2', 'h3', 'h4'].map((key) => ({ key, amount: 1, double: false }));
    const v = checkHttp(
      ops,
      [
        { key: 'h1', succeeded: true },
        { key: 'h2', succeeded: true },
        { key: 'h3', succeeded: false },
        { key: 'h4', succeeded: true },
      ],
      [
        group('h1', 'charge', 1, 'http'),
        group('h2', 'charge', 3, 'http'),
        group('h4', 'x', 1, 'http'),
      ],
    );
    expect(v).toEqual({ ops: 4, executedOnce: 1, duplicateEffects: 2, missing: 2, failed: 1 });
  });
});
