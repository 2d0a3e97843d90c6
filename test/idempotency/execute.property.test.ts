import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import { executeIdempotent } from '../../src/idempotency/execute.js';
import { ReplayedFailureError } from '../../src/idempotency/failure.js';
import { hashKey } from '../../src/idempotency/hash.js';
import type { IdempotencyContext } from '../../src/idempotency/types.js';
import { settle, setup, transientError } from './fixtures.js';

/*
 * Random schedules of duplicate calls on a few keys, each call doing one effect in a step and
 * then succeeding, failing (retryable or for good) or crashing (never finishing, no
 * heartbeat), with time moving between calls. Whatever the schedule:
 * - the effect of a key runs at most once (steps, takeover and release keep it),
 * - every successful call of a key returns that one effect's result,
 * - a key ends completed or failed, never both: no success is seen for a failed key and no
 *   remembered failure for a completed one,
 * - callers only ever see the errors the schedule asked for, the remembered copy of a final
 *   failure, or "in progress".
 */

type Behaviour = 'ok' | 'retryable' | 'final' | 'crash';

type Command =
  | { kind: 'call'; key: number; behaviour: Behaviour }
  | { kind: 'advance'; ms: number };

const KEYS = 3;
const LEASE_MS = 30_000;

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant('call' as const),
    key: fc.integer({ min: 0, max: KEYS - 1 }),
    behaviour: fc.constantFrom<Behaviour>('ok', 'ok', 'retryable', 'final', 'crash'),
  }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 45_000 }) }),
);

interface Seen {
  key: number;
  behaviour: Behaviour;
  value?: string;
  error?: unknown;
}

describe('executeIdempotent (properties)', () => {
  it('runs each effect at most once and every caller agrees on the outcome', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { maxLength: 25, size: 'max' }), async (commands) => {
        const { clock, store } = setup();
        const effects = new Array<number>(KEYS).fill(0);
        const seen: Seen[] = [];
        const pending: Promise<void>[] = [];

        const call = (key: number, behaviour: Behaviour) => {
          const run = executeIdempotent(
            { operation: 'pay', key: `k${key}` },
            async (ctx: IdempotencyContext) => {
              const result = await ctx.step('effect', async () => {
                effects[key] = (effects[key] ?? 0) + 1;
                return `effect-${key}-${effects[key]}`;
              });
              if (behaviour === 'retryable') throw transientError();
              if (behaviour === 'final') throw new Error('declined');
              if (behaviour === 'crash') return new Promise<string>(() => {});
              return result;
            },
            { store, clock, lease: LEASE_MS, heartbeat: false },
          );
          pending.push(
            run.then(
              (outcome) => {
                seen.push({ key, behaviour, value: outcome.value });
              },
              (error: unknown) => {
                seen.push({ key, behaviour, error });
              },
            ),
          );
        };

        for (const c of commands) {
          if (c.kind === 'call') call(c.key, c.behaviour);
          else await clock.advance(c.ms);
          await settle();
        }
        // Let every crashed lease run out, then one more caller per key.
        await clock.advance(LEASE_MS + 1);
        for (let key = 0; key < KEYS; key++) call(key, 'ok');
        await settle();

        for (let key = 0; key < KEYS; key++) {
          expect(effects[key]).toBeLessThanOrEqual(1);
          const mine = seen.filter((s) => s.key === key);
          const values = mine.filter((s) => s.value !== undefined).map((s) => s.value);
          for (const value of values) expect(value).toBe(`effect-${key}-1`);

          const record = await store.get(hashKey({ operation: 'pay', key: `k${key}` }));
          const replayedFailures = mine.filter((s) => s.error instanceof ReplayedFailureError);
          if (record?.status === 'completed') expect(replayedFailures).toHaveLength(0);
          if (record?.status === 'failed') expect(values).toHaveLength(0);

          for (const { error } of mine) {
            if (error === undefined) continue;
            const expected =
              (error as { code?: string }).code === 'ECONNRESET' ||
              (error instanceof Error && error.message === 'declined') ||
              isReprocessError(error, ErrorCode.IDEMPOTENCY_IN_PROGRESS);
            expect(expected, String(error)).toBe(true);
          }
        }
        // Every call that was not told to crash has settled; no timer is left behind.
        expect(seen.filter((s) => s.behaviour !== 'crash')).toHaveLength(
          commands.filter((c) => c.kind === 'call' && c.behaviour !== 'crash').length + KEYS,
        );
        expect(clock.pending).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
