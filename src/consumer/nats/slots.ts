/**
 * A counting gate: at most `size` holders at once; `acquire` waits for a free slot. The
 * JetStream source hands a message to the runtime only once it holds a slot, and frees the
 * slot when the delivery is settled, so no more than `prefetch` are ever unsettled.
 */
export class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Takes a free slot if there is one (no promise, no await: the common case). */
  tryAcquire(): boolean {
    if (this.#free > 0 && this.#waiting.length === 0) {
      this.#free -= 1;
      return true;
    }
    return false;
  }

  /** Resolves once a slot is held. */
  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free -= 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  /** Frees one slot (hands it straight to the oldest waiter, if any). */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free += 1;
  }

  /** Wakes every waiter (at shutdown: they see the source stopped and let go). */
  releaseWaiters(): void {
    for (const next of this.#waiting.splice(0)) next();
  }
}
