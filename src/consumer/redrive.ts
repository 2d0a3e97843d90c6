import { InvalidArgumentError } from '../errors.js';
import { checkQuarantineFilter } from './quarantine-filter.js';
import type { DeadLetterQueue, QuarantineFilter } from './types.js';

/** Which quarantined messages to move back, and how fast. */
export type RedriveFilter = QuarantineFilter & {
  /** At most this many messages a second (default: no limit). */
  ratePerSecond?: number;
};

/**
 * Moves quarantined messages back to the sources they came from: all of them, or those
 * matching `filter` (error code, age, idempotency key, a limit), at most `ratePerSecond`.
 * Payload, headers and idempotency key travel unchanged, so a message whose operation had
 * completed replays its result instead of running again. The dead-letter queue does the
 * moving; this checks the filter first and returns how many moved.
 */
export async function redrive(dlq: DeadLetterQueue, filter: RedriveFilter = {}): Promise<number> {
  if (typeof dlq !== 'object' || dlq === null || typeof dlq.redrive !== 'function') {
    throw new InvalidArgumentError('redrive needs a DeadLetterQueue (an object with redrive())');
  }
  checkQuarantineFilter(filter);
  return dlq.redrive(filter);
}
