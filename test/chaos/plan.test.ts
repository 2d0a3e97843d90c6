/**
 * The chaos run's plans: which orders it publishes (and twice), where its faults land, and
 * its flags. Pure functions on seeded randomness.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planTriggers, share } from '../../chaos/fault-plan.js';
import { DEFAULT_OPTIONS, parseChaosArgs } from '../../chaos/options.js';
import { planPhase } from '../../chaos/plan.js';
import { isReprocessError } from '../../src/errors.js';
import { seededRandom } from '../../src/random.js';

const rates = { duplicate: 0.05, poison: 0.01, sticky: 0.02 };

describe('planPhase', () => {
  it('property: every order is published once or twice, stalled ones twice back to back', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer(),
        (count, stalls, seed) => {
          const plan = planPhase('amqp', count, stalls, rates, seededRandom(seed));
          expect(plan.messages).toHaveLength(count);
          expect(new Set(plan.messages.map((m) => m.id)).size).toBe(count);
          const copies = new Map<string, number[]>();
          plan.publications.forEach((p, at) => {
            copies.set(p.body.id, [...(copies.get(p.body.id) ?? []), at]);
          });
          for (const m of plan.messages) {
            const at = copies.get(m.id) ?? [];
            expect(at.length === 1 || at.length === 2).toBe(true);
            if (m.stall) {
              expect(at).toHaveLength(2);
              expect((at[1] as number) - (at[0] as number)).toBe(1);
              expect(m.kind).toBe('normal');
            }
          }
          expect(plan.publications.length - count).toBe(plan.duplicates);
          const normal = plan.messages.filter((m) => m.kind === 'normal');
          expect(plan.messages.filter((m) => m.stall)).toHaveLength(
            Math.min(stalls, normal.length),
          );
          if (normal.length > 0) {
            // The baseline always has a duplicated normal order to show.
            expect(normal.some((m) => (copies.get(m.id) ?? []).length === 2)).toBe(true);
          }
        },
      ),
    );
  });

  it('is the same plan for the same seed', () => {
    const a = planPhase('nats', 300, 3, rates, seededRandom(7));
    const b = planPhase('nats', 300, 3, rates, seededRandom(7));
    expect(a).toEqual(b);
    expect(a.messages[0]?.id).toBe('n-00000');
  });
});

describe('planTriggers', () => {
  it('property: each fault once, inside [5%, 85%] of the progress, the outage mid-phase', () => {
    fc.assert(
      fc.property(
        fc.record({
          kills: fc.nat({ max: 30 }),
          brokerCuts: fc.nat({ max: 10 }),
          storeKills: fc.nat({ max: 10 }),
          outage: fc.boolean(),
        }),
        fc.integer(),
        (faults, seed) => {
          const triggers = planTriggers(faults, seededRandom(seed));
          const count = (kind: string) => triggers.filter((t) => t.kind === kind).length;
          expect(count('kill')).toBe(faults.kills);
          expect(count('brokerCut')).toBe(faults.brokerCuts);
          expect(count('storeKill')).toBe(faults.storeKills);
          expect(count('outage')).toBe(faults.outage ? 1 : 0);
          for (const t of triggers) {
            expect(t.at).toBeGreaterThanOrEqual(0.05);
            expect(t.at).toBeLessThanOrEqual(0.85);
          }
          expect([...triggers].sort((a, b) => a.at - b.at)).toEqual(triggers);
        },
      ),
    );
  });

  it('share splits a total as evenly as it can', () => {
    expect(share(20, 2)).toEqual([10, 10]);
    expect(share(5, 2)).toEqual([3, 2]);
    expect(share(1, 3)).toEqual([1, 0, 0]);
  });
});

describe('parseChaosArgs', () => {
  it('reads every form of flag', () => {
    const parsed = parseChaosArgs(
      [
        '--',
        '--store',
        'postgres',
        '--no-idempotency',
        '--messages=500',
        '--kills',
        '4',
        '--duration',
        '90s',
        '--phases',
        'nats,amqp',
        '--error-rate',
        '0.2',
        '--seed=9',
        '--json',
      ],
      () => 0,
    );
    expect(parsed.kind).toBe('run');
    if (parsed.kind !== 'run') return;
    expect(parsed.options).toMatchObject({
      store: 'postgres',
      idempotency: false,
      messages: 500,
      kills: 4,
      durationMs: 90_000,
      phases: ['nats', 'amqp'],
      seed: 9,
      json: true,
    });
    expect(parsed.options.rates.handlerError).toBe(0.2);
    expect(parsed.options.rates.duplicate).toBe(DEFAULT_OPTIONS.rates.duplicate);
  });

  it('takes the seed from the clock when none is given, and keeps the stall past the lease', () => {
    const parsed = parseChaosArgs(['--lease', '5s'], () => 12345);
    expect(parsed.kind === 'run' && parsed.options.seed).toBe(12345);
    expect(parsed.kind === 'run' && parsed.options.stallMs).toBeGreaterThan(5000);
  });

  it('refuses bad flags with an error naming them', () => {
    for (const [args, words] of [
      [['--store', 'mongo'], '--store'],
      [['--messages', '0'], '--messages'],
      [['--messages', '1.5'], '--messages'],
      [['--error-rate', '2'], '--error-rate'],
      [['--phases', 'amqp,sqs'], '--phases'],
      [['--phases', 'amqp,amqp'], '--phases'],
      [['--duration', 'soon'], '--duration'],
      [['--workers'], '--workers'],
      [['--lease', '3s', '--stall', '2s'], '--stall'],
      [['--frobnicate'], '--frobnicate'],
    ] as const) {
      let caught: unknown;
      try {
        parseChaosArgs(args, () => 0);
      } catch (error) {
        caught = error;
      }
      expect(isReprocessError(caught, 'INVALID_ARGUMENT'), String(args)).toBe(true);
      expect((caught as Error).message).toContain(words);
    }
  });

  it('--help asks for the usage', () => {
    expect(parseChaosArgs(['--help']).kind).toBe('help');
  });
});
