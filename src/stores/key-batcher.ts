import { microtask } from './microtask.js';

/**
 * `setImmediate` as it was when this module loaded: a test that fakes timers
 * (`vi.useFakeTimers()`) must not stall the store's batches until it advances its clock.
 */
const nextTurn: (run: () => void) => void = globalThis.setImmediate;

/**
 * Groups concurrent calls into one statement per batch, with at most one call per key in a
 * batch (a statement may not touch one row twice, and two calls on one key must be decided
 * one after the other, as if unbatched).
 *
 * Adaptive, like group commit: a call waits only for the current microtask (to meet the calls
 * made in the same tick; with `gather: 'turn'`, for the event loop's next turn); while
 * `maxInFlight` batches are running, new calls queue and leave together as soon as one
 * returns. With `idleRunsAlone`, a call made while nothing is queued or running goes at once,
 * alone, and only the calls made after it in its tick wait. At low concurrency every call goes
 * alone.
 *
 *   calls ──► queue ──(microtask)──► batch of distinct keys ──► runMany ──► each caller
 *                ▲                                                │
 *                └──── a repeated key waits for a later batch ◄───┘ (on completion, drain)
 */
export class KeyBatcher<I, O> {
  private readonly queue: Array<Job<I, O>> = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly idle: Array<() => void> = [];

  constructor(private readonly options: KeyBatcherOptions<I, O>) {}

  /**
   * Runs `item`: with `idleRunsAlone`, at once and alone when nothing is queued or running (so
   * a caller at low concurrency pays nothing for batching); else queued for the next batch.
   * Resolves with its own outcome.
   */
  submit(item: I): Promise<O> {
    if (this.options.idleRunsAlone === true && this.inFlight === 0 && this.queue.length === 0) {
      this.inFlight++;
      let alone: Promise<O>;
      try {
        alone = this.options.runOne(item);
      } catch (error) {
        alone = Promise.reject(error);
      }
      alone.then(this.done, this.done);
      return alone;
    }
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, key: this.options.keyOf(item), resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        const gather = this.options.gather === 'turn' ? nextTurn : microtask;
        gather(() => {
          this.scheduled = false;
          this.drain();
        });
      }
    });
  }

  /** Resolves once nothing is queued or running. */
  settled(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private drain(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const batch = this.take();
      this.inFlight++;
      void this.run(batch).finally(this.done);
    }
  }

  /** A call or batch has returned: start what waits, and wake `settled()` once idle. */
  private readonly done = (): void => {
    this.inFlight--;
    this.drain();
    if (this.inFlight === 0 && this.queue.length === 0) {
      for (const resolve of this.idle.splice(0)) resolve();
    }
  };

  /**
   * Takes up to maxBatchSize jobs with distinct keys, first come first served, and at most
   * maxBatchWeight of weight (always at least one job).
   */
  private take(): Array<Job<I, O>> {
    const batch: Array<Job<I, O>> = [];
    const keys = new Set<string>();
    const { weightOf, maxBatchWeight = Number.POSITIVE_INFINITY } = this.options;
    let weight = 0;
    let kept = 0;
    for (let i = 0; i < this.queue.length; i++) {
      const job = this.queue[i] as Job<I, O>;
      const jobWeight = weightOf === undefined ? 0 : weightOf(job.item);
      if (
        batch.length < this.options.maxBatchSize &&
        !keys.has(job.key) &&
        (batch.length === 0 || weight + jobWeight <= maxBatchWeight)
      ) {
        keys.add(job.key);
        batch.push(job);
        weight += jobWeight;
      } else {
        this.queue[kept++] = job;
      }
    }
    this.queue.length = kept;
    return batch;
  }

  private async run(batch: Array<Job<I, O>>): Promise<void> {
    try {
      const first = batch[0] as Job<I, O>;
      const outcomes =
        batch.length === 1
          ? [await this.options.runOne(first.item)]
          : await this.options.runMany(batch.map((job) => job.item));
      batch.forEach((job, i) => {
        job.resolve(outcomes[i] as O);
      });
    } catch (error) {
      for (const job of batch) job.reject(error);
    }
  }
}

/** How a {@link KeyBatcher} runs its calls. */
export interface KeyBatcherOptions<I, O> {
  /** Most calls in one statement. */
  maxBatchSize: number;
  /** Most statements running at once (each holds one pool connection). */
  maxInFlight: number;
  /**
   * A call made while nothing is queued or running runs at once with `runOne`, without waiting
   * for the calls of its tick (default false: it waits for the microtask, and may share their
   * batch). For stores whose calls are network round trips: the first call of a burst saves a
   * hop, the rest still batch.
   */
  idleRunsAlone?: boolean;
  /**
   * How long a queued call waits for others before its batch leaves, when no batch is running:
   * `'microtask'` (default) until the current microtask queue is reached, which meets the calls
   * made by the same synchronous code; `'turn'` until the event loop's next turn
   * (`setImmediate`), which also meets those made by promise chains that start one after the
   * other in this turn: an async iterator hands out buffered messages one per few microtasks,
   * and under `'microtask'` their calls left in batches of two or three. For a store whose
   * batch is a local transaction (SQLite), where the wait costs no round trip.
   */
  gather?: 'microtask' | 'turn';
  /**
   * Most total weight of one batch (with {@link weightOf}): a batch whose statement must stay
   * under a size the server accepts (MySQL's max_allowed_packet). One call always goes.
   */
  maxBatchWeight?: number;
  weightOf?(item: I): number;
  keyOf(item: I): string;
  /** Runs one call alone (the cheaper single-row statement). */
  runOne(item: I): Promise<O>;
  /** Runs several calls with distinct keys in one statement; outcomes in the same order. */
  runMany(items: I[]): Promise<O[]>;
}

interface Job<I, O> {
  item: I;
  key: string;
  resolve(value: O): void;
  reject(error: unknown): void;
}

/** Calls of one kind on a store: through a {@link KeyBatcher} when batching is on, else alone. */
export interface BatchedCalls<I, O> {
  /** Runs `item`: queued for the next batch, or at once with `runOne` when batching is off. */
  run(item: I): Promise<O>;
  /** Resolves once no batch is queued or running (at once when batching is off). */
  settled(): Promise<void>;
}

/**
 * The calls of one kind (begin, complete, ...) of a store whose `batch` option gave
 * `settings` (undefined: batching off). Items are keyed by their `key`.
 */
export function batchedCalls<I extends { key: string }, O>(
  settings: { maxBatchSize: number; maxInFlight: number } | undefined,
  runOne: (item: I) => Promise<O>,
  runMany: (items: I[]) => Promise<O[]>,
  weight?: { maxBatchWeight: number; weightOf: (item: I) => number },
): BatchedCalls<I, O> {
  if (settings === undefined) return { run: runOne, settled: () => Promise.resolve() };
  const batcher = new KeyBatcher<I, O>({
    ...settings,
    ...weight,
    keyOf: (item) => item.key,
    runOne,
    runMany,
    idleRunsAlone: true,
  });
  return { run: (item) => batcher.submit(item), settled: () => batcher.settled() };
}
