/** A Float64Array that grows as indexes past its end are written. */
export class GrowableSeries {
  private data: Float64Array;
  private used = 0;

  constructor(initial = 256) {
    this.data = new Float64Array(initial);
  }

  get length(): number {
    return this.used;
  }

  add(index: number, amount: number): void {
    if (index >= this.data.length) {
      let n = this.data.length * 2;
      while (n <= index) n *= 2;
      const next = new Float64Array(n);
      next.set(this.data);
      this.data = next;
    }
    this.data[index] = (this.data[index] as number) + amount;
    if (index >= this.used) this.used = index + 1;
  }

  get(index: number): number {
    return index < this.used ? (this.data[index] as number) : 0;
  }

  /** A copy of the used part, padded with zeros to `length` when given. */
  toArray(length = this.used): number[] {
    const out = new Array<number>(length).fill(0);
    for (let i = 0; i < Math.min(length, this.used); i++) out[i] = this.data[i] as number;
    return out;
  }
}

/** The q-quantile (0..1) of an already sorted array; NaN when empty. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}
