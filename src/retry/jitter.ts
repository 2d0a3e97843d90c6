import type { Random } from '../random.js';

/** How randomness spreads the delay (see DESIGN.md, Retry). */
export type JitterKind = 'none' | 'full' | 'equal' | 'decorrelated';

/** Inputs of one jitter draw: `d` is the capped un-jittered delay. */
export interface JitterInput {
  d: number;
  base: number;
  cap: number;
  /** The previous delay (decorrelated jitter); `base` before the first retry. */
  prev: number;
}

/**
 * - none: `d`
 * - full: `random(0, d)`
 * - equal: `d/2 + random(0, d/2)`
 * - decorrelated: `min(cap, random(base, prev * 3))`
 */
export function applyJitter(kind: JitterKind, input: JitterInput, random: Random): number {
  const { d, base, cap, prev } = input;
  switch (kind) {
    case 'none':
      return d;
    case 'full':
      return random() * d;
    case 'equal':
      return d / 2 + random() * (d / 2);
    case 'decorrelated': {
      const hi = Math.max(base, prev * 3);
      return Math.min(cap, base + random() * (hi - base));
    }
  }
}

/** Bounds of one draw, for property tests and the CLI's table. */
export function jitterBounds(kind: JitterKind, input: JitterInput): { min: number; max: number } {
  const { d, base, cap, prev } = input;
  switch (kind) {
    case 'none':
      return { min: d, max: d };
    case 'full':
      return { min: 0, max: d };
    case 'equal':
      return { min: d / 2, max: d };
    case 'decorrelated':
      return { min: Math.min(cap, base), max: Math.min(cap, Math.max(base, prev * 3)) };
  }
}
