/** A source of uniform numbers in [0, 1). `Math.random` by default; tests pass a seeded one. */
export type Random = () => number;

/**
 * A small, fast, seeded generator (mulberry32). Deterministic for a seed: the same seed gives
 * the same sequence on every machine. Not for cryptography.
 */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform number in [min, max). */
export function uniform(random: Random, min: number, max: number): number {
  return min + random() * (max - min);
}
