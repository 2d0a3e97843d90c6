import type { BeginResult, IdempotencyRecord } from '../idempotency/store.js';

/** The `acquired` answer of `begin` for a record this call holds, read back as it stands. */
export function acquiredRecord(record: IdempotencyRecord, takeover: boolean): BeginResult {
  return {
    kind: 'acquired',
    token: record.token,
    leaseUntil: record.leaseUntil,
    attempts: record.attempts,
    steps: record.steps,
    takeover,
  };
}
