/**
 * A binary min-heap of (time, id) pairs in typed arrays: the simulator's hot loop pushes and
 * pops millions of events, and parallel typed arrays keep that free of per-event allocation.
 * Ties on time pop in insertion order, so runs are deterministic for a seed.
 */
export class EventQueue {
  private times: Float64Array;
  private seqs: Float64Array;
  private ids: Int32Array;
  private size = 0;
  private seq = 0;

  constructor(initialCapacity = 1024) {
    this.times = new Float64Array(initialCapacity);
    this.seqs = new Float64Array(initialCapacity);
    this.ids = new Int32Array(initialCapacity);
  }

  get length(): number {
    return this.size;
  }

  /** Time of the earliest event; Infinity when empty. */
  peekTime(): number {
    return this.size > 0 ? (this.times[0] as number) : Number.POSITIVE_INFINITY;
  }

  push(time: number, id: number): void {
    if (this.size === this.times.length) this.grow();
    let i = this.size++;
    const seq = this.seq++;
    const { times, seqs, ids } = this;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pt = times[parent] as number;
      if (pt < time || (pt === time && (seqs[parent] as number) < seq)) break;
      times[i] = pt;
      seqs[i] = seqs[parent] as number;
      ids[i] = ids[parent] as number;
      i = parent;
    }
    times[i] = time;
    seqs[i] = seq;
    ids[i] = id;
  }

  /** Removes the earliest event and returns its id; its time is read with peekTime before. */
  pop(): number {
    const { times, seqs, ids } = this;
    const top = ids[0] as number;
    const last = --this.size;
    if (last === 0) return top;
    const t = times[last] as number;
    const s = seqs[last] as number;
    const id = ids[last] as number;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      let c = l;
      if (r < last) {
        const lt = times[l] as number;
        const rt = times[r] as number;
        if (rt < lt || (rt === lt && (seqs[r] as number) < (seqs[l] as number))) c = r;
      }
      const ct = times[c] as number;
      if (t < ct || (t === ct && s < (seqs[c] as number))) break;
      times[i] = ct;
      seqs[i] = seqs[c] as number;
      ids[i] = ids[c] as number;
      i = c;
    }
    times[i] = t;
    seqs[i] = s;
    ids[i] = id;
    return top;
  }

  private grow(): void {
    const n = this.times.length * 2;
    const times = new Float64Array(n);
    const seqs = new Float64Array(n);
    const ids = new Int32Array(n);
    times.set(this.times);
    seqs.set(this.seqs);
    ids.set(this.ids);
    this.times = times;
    this.seqs = seqs;
    this.ids = ids;
  }
}
