import { toMs } from '../duration.js';
import type { JitterKind } from '../retry/jitter.js';
import { createRatioBudget } from '../retry/ratio-budget.js';
import { createTokenBucketBudget } from '../retry/token-bucket-budget.js';
import { profiles } from '../retry/profiles.js';
import type { RetryBudget, RetryOptions } from '../retry/types.js';
import type { Clock } from '../clock.js';
import { type SimStrategy, defineStrategy, JITTERS } from './strategy.js';

export interface CatalogueOptions {
  maxAttempts?: number;
  baseMs?: number;
  capMs?: number;
}

const JITTER_LABEL: Record<JitterKind, string> = {
  none: 'exponential, no jitter',
  full: 'full jitter',
  equal: 'equal jitter',
  decorrelated: 'decorrelated jitter',
};

/**
 * Turns a retry policy (a profile, or one read from a config file) into a strategy. Its
 * `budget`, an object on the real clock, cannot be shared by a simulation: pass `budget`, which
 * builds one on the simulation's clock for each run (for a config, from its budget section).
 */
export function strategyFromPolicy(
  name: string,
  policy: RetryOptions,
  budget?: { build: (clock: Clock) => RetryBudget; label: string },
): SimStrategy {
  return defineStrategy({
    ...(budget === undefined ? {} : { budget: budget.build, budgetLabel: budget.label }),
    name,
    maxAttempts: policy.maxAttempts ?? 3,
    backoff: {
      kind: policy.backoff ?? 'exponential',
      base: toMs(policy.base ?? 100, 'base'),
      cap: toMs(policy.cap ?? 30_000, 'cap'),
      jitter: policy.jitter ?? 'full',
      ...(policy.factor === undefined ? {} : { factor: policy.factor }),
    },
    ...(policy.deadline === undefined ? {} : { deadlineMs: toMs(policy.deadline, 'deadline') }),
  });
}

/**
 * The strategies `reprocess simulate` compares: no retry, immediate retry, exponential
 * backoff under each jitter, each of the retrying ones with no budget, a token bucket and a
 * ratio budget, and the sync and async profiles.
 */
export function standardStrategies(options: CatalogueOptions = {}): SimStrategy[] {
  const maxAttempts = options.maxAttempts ?? 5;
  const base = options.baseMs ?? 100;
  const cap = options.capMs ?? 10_000;
  const out: SimStrategy[] = [defineStrategy({ name: 'no retry', maxAttempts: 1 })];
  const shapes: Array<{ name: string; backoff: Parameters<typeof defineStrategy>[0]['backoff'] }> =
    [
      { name: 'immediate retry', backoff: { kind: 'constant', base: 0, cap: 0, jitter: 'none' } },
      ...JITTERS.map((jitter) => ({
        name: JITTER_LABEL[jitter],
        backoff: { kind: 'exponential' as const, base, cap, jitter },
      })),
    ];
  for (const shape of shapes) {
    out.push(defineStrategy({ name: shape.name, maxAttempts, backoff: shape.backoff ?? {} }));
    out.push(
      defineStrategy({
        name: `${shape.name} + token bucket`,
        maxAttempts,
        backoff: shape.backoff ?? {},
        budget: () => createTokenBucketBudget(),
        budgetLabel: 'token bucket',
      }),
    );
    out.push(
      defineStrategy({
        name: `${shape.name} + ratio budget`,
        maxAttempts,
        backoff: shape.backoff ?? {},
        budget: (clock) => createRatioBudget({ clock }),
        budgetLabel: 'ratio',
      }),
    );
  }
  out.push(strategyFromPolicy('sync profile', profiles.sync));
  out.push(strategyFromPolicy('async profile', profiles.async));
  return out;
}

/** The four exponential strategies without budget, for the contention study. */
export function jitterStrategies(options: CatalogueOptions = {}): SimStrategy[] {
  return JITTERS.map((jitter) =>
    defineStrategy({
      name: JITTER_LABEL[jitter],
      maxAttempts: options.maxAttempts ?? 10_000,
      backoff: {
        kind: 'exponential',
        base: options.baseMs ?? 5,
        cap: options.capMs ?? 2_000,
        jitter,
      },
    }),
  );
}
