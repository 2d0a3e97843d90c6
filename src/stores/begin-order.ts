import type { BeginResult } from '../idempotency/store.js';

/** How many recent keys the share of new keys is averaged over (about). */
const WINDOW = 16;

/**
 * Which request a store's `begin` sends first, learned from what recent calls found.
 * Read-first: a replay is one read, a new key a read and then the claim. Insert-first: a new
 * key is one claim, a replay pays for a write that finds the record (and, in some stores, a
 * read after it). The order follows the share of keys that had no record, as an exponential
 * moving average over about the last 16 keys: insert-first once more than half were new. It
 * starts at read-first, so a store that only replays never pays for a write, and it takes 11
 * new keys in a row to switch from there. Both orders must run the same conditional writes, so
 * only the cost differs; at a switch, the calls already in flight pay the other order once.
 */
export class BeginOrder {
  private newShare = 0;

  /** True while most recent keys were new: send the claim first. */
  insertFirst(): boolean {
    return this.newShare > 0.5;
  }

  /** Records what one begin found: `isNew` when the key had no record (nor any item). */
  saw(isNew: boolean): void {
    this.newShare += ((isNew ? 1 : 0) - this.newShare) / WINDOW;
  }
}

/**
 * Whether a begin that wrote first (a claim or an insert) found its key new: it acquired a
 * first attempt that took nothing over. What {@link BeginOrder.saw} learns from such a begin.
 */
export function foundNew(result: BeginResult): boolean {
  return result.kind === 'acquired' && result.attempts === 1 && !result.takeover;
}
