import { InvalidArgumentError } from '../errors.js';
import type { Random } from '../random.js';
import { type JitterKind, applyJitter } from './jitter.js';

/** How the un-jittered delay grows with the attempt number. */
export type BackoffKind = 'constant' | 'linear' | 'exponential';

/** A backoff strategy: base delay, growth, cap and jitter. All durations in milliseconds. */
export interface BackoffOptions {
  kind: BackoffKind;
  /** Delay before the second attempt (n = 0), before jitter. */
  base: number;
  /** Growth factor for `exponential` (default 2). */
  factor?: number;
  /** No delay ever exceeds this. */
  cap: number;
  jitter: JitterKind;
}

/** State carried between delays: the retry index `n` (from 0) and the previous delay. */
export interface BackoffState {
  readonly n: number;
  readonly prev: number;
}

export const DEFAULT_FACTOR = 2;

/** Validates a backoff and fills its defaults; throws {@link InvalidArgumentError}. */
export function normalizeBackoff(options: BackoffOptions): Required<BackoffOptions> {
  const factor = options.factor ?? DEFAULT_FACTOR;
  if (!Number.isFinite(options.base) || options.base < 0) {
    throw new InvalidArgumentError(
      `backoff.base must be a finite number >= 0, got ${options.base}`,
    );
  }
  if (!Number.isFinite(options.cap) || options.cap < 0) {
    throw new InvalidArgumentError(`backoff.cap must be a finite number >= 0, got ${options.cap}`);
  }
  if (!Number.isFinite(factor) || factor < 1) {
    throw new InvalidArgumentError(`backoff.factor must be a finite number >= 1, got ${factor}`);
  }
  if (!['constant', 'linear', 'exponential'].includes(options.kind)) {
    throw new InvalidArgumentError(
      `backoff.kind must be one of constant, linear, exponential; got ${String(options.kind)}`,
    );
  }
  if (!['none', 'full', 'equal', 'decorrelated'].includes(options.jitter)) {
    throw new InvalidArgumentError(
      `jitter must be one of none, full, equal, decorrelated; got ${String(options.jitter)}`,
    );
  }
  return {
    kind: options.kind,
    base: options.base,
    factor,
    cap: options.cap,
    jitter: options.jitter,
  };
}

/**
 * The un-jittered delay before attempt n+1 (n from 0), capped:
 * constant `base`, linear `base * (n + 1)`, exponential `base * factor^n`.
 */
export function baseDelay(options: Required<BackoffOptions>, n: number): number {
  let d: number;
  switch (options.kind) {
    case 'constant':
      d = options.base;
      break;
    case 'linear':
      d = options.base * (n + 1);
      break;
    case 'exponential':
      // A zero base stays zero however far n goes (0 × Infinity would be NaN).
      d = options.base === 0 ? 0 : options.base * options.factor ** n;
      break;
  }
  return Math.min(options.cap, d);
}

/** The state before the first retry. */
export function initialBackoffState(options: Required<BackoffOptions>): BackoffState {
  return { n: 0, prev: options.base };
}

/**
 * Pure step of the strategy: the delay before the next attempt and the state after it.
 * The formulas are those of DESIGN.md (Retry); the delay never exceeds `cap`.
 */
export function nextDelay(
  options: Required<BackoffOptions>,
  state: BackoffState,
  random: Random,
): [delay: number, next: BackoffState] {
  const d = baseDelay(options, state.n);
  const delay = applyJitter(
    options.jitter,
    { d, base: options.base, cap: options.cap, prev: state.prev },
    random,
  );
  return [delay, { n: state.n + 1, prev: delay }];
}

/** Walks `count` delays from the start; used by the CLI and the simulator. */
export function delaySequence(
  options: Required<BackoffOptions>,
  count: number,
  random: Random,
): number[] {
  const out: number[] = [];
  let state = initialBackoffState(options);
  for (let i = 0; i < count; i++) {
    const [d, next] = nextDelay(options, state, random);
    out.push(d);
    state = next;
  }
  return out;
}
