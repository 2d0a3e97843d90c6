import { InvalidArgumentError } from './errors.js';

/** A duration: milliseconds as a number, or a string such as `250ms`, `30s`, `5m`, `24h`, `2d`. */
export type Duration = number | string;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** Parses a {@link Duration} to milliseconds, or throws {@link InvalidArgumentError} naming `what`. */
export function toMs(value: Duration, what = 'duration'): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new InvalidArgumentError(
        `${what} must be a finite number of milliseconds >= 0, got ${value}`,
      );
    }
    return value;
  }
  if (typeof value === 'string') {
    const ms = stringMs(value);
    if (ms !== undefined) {
      // Hundreds of digits parse as Infinity: refused here, under the caller's name for it.
      if (Number.isFinite(ms)) return ms;
      throw new InvalidArgumentError(`${what} is too long a duration: ${JSON.stringify(value)}`);
    }
  }
  throw new InvalidArgumentError(
    typeof value === 'string'
      ? // Text needs its unit: "5" could be 5 ms or 5 s, and is refused rather than guessed.
        `${what} must be a duration with its unit, such as 250ms, 30s, 5m, 24h; got ${JSON.stringify(value)}`
      : `${what} must be milliseconds or a duration such as 250ms, 30s, 5m, 24h; got ${JSON.stringify(value)}`,
  );
}

/** Whether `value` is a duration string `toMs` accepts. */
export function isDurationString(value: string): boolean {
  const ms = stringMs(value);
  return ms !== undefined && Number.isFinite(ms);
}

/** The milliseconds of a duration string (Infinity for a number too long), or undefined. */
function stringMs(value: string): number | undefined {
  const match = PATTERN.exec(value.trim());
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return Math.round(Number(match[1]) * (UNITS[match[2]] ?? 1));
}
