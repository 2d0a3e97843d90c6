/**
 * Which fault hits which attempt. Each decision is a pure function of (seed, fault, invoice,
 * attempt), so the unprotected and the protected run see exactly the same traffic and the
 * same faults, whatever order concurrent requests happen to run in.
 */
export interface FaultRates {
  /** The order write times out after the charge succeeded. */
  orderTimeout: number;
  /** The response to the client is lost on the way back (the server did the work). */
  lostResponse: number;
  /** The order write is slow, past the client's attempt timeout. */
  slowOrder: number;
  /** The receipt message is published twice. */
  duplicateDelivery: number;
  /** The receipt worker crashes after sending the email, before acknowledging. */
  workerCrash: number;
  /** The customer's email address bounces (a permanent failure). */
  badEmail: number;
}

export const DEFAULT_FAULT_RATES: FaultRates = {
  orderTimeout: 0.12,
  lostResponse: 0.12,
  slowOrder: 0.03,
  duplicateDelivery: 0.1,
  workerCrash: 0.06,
  badEmail: 0.02,
};

export type FaultKind = keyof FaultRates;

const SALT: Record<FaultKind, number> = {
  orderTimeout: 0x9e3779b1,
  lostResponse: 0x85ebca77,
  slowOrder: 0xc2b2ae3d,
  duplicateDelivery: 0x27d4eb2f,
  workerCrash: 0x165667b1,
  badEmail: 0xd3a2646c,
};

/**
 * A uniform number in [0, 1) from the inputs (a 32-bit integer mix, murmur3's finalizer).
 * The seed is mixed in as an input of its own: XORed into the start with the invoice
 * number mixed in next, another seed only renumbered the invoices.
 */
export function mix(seed: number, salt: number, a: number, b: number): number {
  let h = salt >>> 0;
  for (const v of [seed, a, b]) {
    h = Math.imul(h ^ (v >>> 0), 0xcc9e2d51);
    h = (h << 15) | (h >>> 17);
    h = Math.imul(h, 0x1b873593);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

export class FaultPlan {
  readonly injected: Record<FaultKind, number> = {
    orderTimeout: 0,
    lostResponse: 0,
    slowOrder: 0,
    duplicateDelivery: 0,
    workerCrash: 0,
    badEmail: 0,
  };

  constructor(
    readonly seed: number,
    readonly rates: FaultRates,
  ) {}

  /** Whether `kind` hits attempt `attempt` (from 1) of invoice `invoice`; counts the hits. */
  hits(kind: FaultKind, invoice: number, attempt = 1): boolean {
    const hit = mix(this.seed, SALT[kind], invoice, attempt) < this.rates[kind];
    if (hit) this.injected[kind]++;
    return hit;
  }

  /** Like `hits`, without counting (a property of the invoice, not an event). */
  is(kind: FaultKind, invoice: number): boolean {
    return mix(this.seed, SALT[kind], invoice, 0) < this.rates[kind];
  }
}
