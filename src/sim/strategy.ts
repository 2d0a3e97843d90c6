import type { Clock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import { type BackoffOptions, normalizeBackoff } from '../retry/backoff.js';
import type { JitterKind } from '../retry/jitter.js';
import type { RetryBudget } from '../retry/types.js';

/**
 * One retry strategy as the simulator runs it: the same backoff options the retry engine
 * takes (delays come from `nextDelay` in retry/backoff.ts, never a second copy), a maximum
 * number of attempts, an optional deadline, and an optional budget shared by every client.
 */
export interface SimStrategy {
  name: string;
  maxAttempts: number;
  backoff: Required<BackoffOptions>;
  /** Total time budget per request, ms (Infinity for none). */
  deadlineMs: number;
  /** Builds the budget shared by all clients of one run, on the simulation's clock. */
  budget?: (clock: Clock) => RetryBudget;
  /** Short label of the budget, for tables. */
  budgetLabel?: string;
}

export interface StrategyInput {
  name: string;
  maxAttempts: number;
  backoff?: Partial<BackoffOptions>;
  deadlineMs?: number;
  budget?: (clock: Clock) => RetryBudget;
  budgetLabel?: string;
}

/** Validates and fills a strategy. */
export function defineStrategy(input: StrategyInput): SimStrategy {
  if (!Number.isInteger(input.maxAttempts) || input.maxAttempts < 1) {
    throw new InvalidArgumentError(
      `strategy ${input.name}: maxAttempts must be an integer >= 1, got ${input.maxAttempts}`,
    );
  }
  const backoff = normalizeBackoff({
    kind: input.backoff?.kind ?? 'exponential',
    base: input.backoff?.base ?? 100,
    cap: input.backoff?.cap ?? 10_000,
    jitter: input.backoff?.jitter ?? 'none',
    ...(input.backoff?.factor === undefined ? {} : { factor: input.backoff.factor }),
  });
  const deadlineMs = input.deadlineMs ?? Number.POSITIVE_INFINITY;
  if (!(deadlineMs > 0)) {
    throw new InvalidArgumentError(`strategy ${input.name}: deadlineMs must be > 0`);
  }
  const strategy: SimStrategy = {
    name: input.name,
    maxAttempts: input.maxAttempts,
    backoff,
    deadlineMs,
  };
  if (input.budget) strategy.budget = input.budget;
  if (input.budgetLabel) strategy.budgetLabel = input.budgetLabel;
  return strategy;
}

/** The jitter kinds in the order tables show them. */
export const JITTERS: readonly JitterKind[] = ['none', 'full', 'equal', 'decorrelated'];
