import { NonRetryableError } from '../errors.js';
import type { FaultPlan } from './faults.js';

/** A charge the simulated payment provider made. */
export interface Charge {
  id: string;
  invoice: number;
  customer: string;
  amount: number;
}

/** The provider's answer when it is overloaded: a status and a Retry-After, like 429/503. */
export class ProviderBusyError extends Error {
  readonly status: number;
  readonly retryAfterMs: number;
  readonly retryable = true;
  constructor(status: 429 | 503, retryAfterMs: number) {
    super(`payment provider answered ${status}`);
    this.name = 'ProviderBusyError';
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The order database timed out; whether the write happened is unknown to the caller (here: it did not). */
export class OrderWriteTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor() {
    super('order write timed out');
    this.name = 'OrderWriteTimeoutError';
  }
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A payment provider like Stripe: it charges every call, except that a call carrying an
 * idempotency key it has seen returns the first charge. For invoices in its outage range,
 * the first `outageAttempts` charge calls answer 429 or 503 with a Retry-After.
 */
export class PaymentProvider {
  readonly charges: Charge[] = [];
  private readonly byKey = new Map<string, Charge>();
  private readonly calls = new Map<number, number>();
  callCount = 0;
  busyAnswers = 0;

  constructor(
    private readonly outage: { from: number; to: number; attempts: number; retryAfterMs: number },
  ) {}

  async charge(
    input: { invoice: number; customer: string; amount: number },
    key?: string,
  ): Promise<Charge> {
    this.callCount++;
    const n = (this.calls.get(input.invoice) ?? 0) + 1;
    this.calls.set(input.invoice, n);
    await pause(1);
    if (
      input.invoice >= this.outage.from &&
      input.invoice < this.outage.to &&
      n <= this.outage.attempts
    ) {
      this.busyAnswers++;
      throw new ProviderBusyError(n % 2 === 1 ? 503 : 429, this.outage.retryAfterMs);
    }
    if (key !== undefined) {
      const first = this.byKey.get(key);
      if (first) return first;
    }
    const charge: Charge = { id: `ch_${this.charges.length + 1}`, ...input };
    this.charges.push(charge);
    if (key !== undefined) this.byKey.set(key, charge);
    return charge;
  }

  /** Invoices charged more than once. */
  chargedTwice(): number {
    return countRepeats(this.charges.map((c) => c.invoice));
  }
}

/** The order table. A write may time out (after the charge) or be slow. */
export class OrderBook {
  readonly orders: Array<{ invoice: number; charge: string }> = [];
  private readonly writes = new Map<number, number>();

  constructor(private readonly faults: FaultPlan) {}

  async write(invoice: number, charge: Charge): Promise<{ order: number }> {
    const n = (this.writes.get(invoice) ?? 0) + 1;
    this.writes.set(invoice, n);
    if (this.faults.hits('slowOrder', invoice, n)) await pause(1200);
    else await pause(1);
    if (this.faults.hits('orderTimeout', invoice, n)) throw new OrderWriteTimeoutError();
    this.orders.push({ invoice, charge: charge.id });
    return { order: this.orders.length };
  }

  duplicates(): number {
    return countRepeats(this.orders.map((o) => o.invoice));
  }

  has(invoice: number): boolean {
    return this.orders.some((o) => o.invoice === invoice);
  }
}

/** The email provider is down for these invoices' first sends (retryable). */
export class EmailUnavailableError extends Error {
  readonly code = 'EMAIL_UNAVAILABLE';
  readonly retryable = true;
  constructor() {
    super('email provider unavailable (503)');
    this.name = 'EmailUnavailableError';
  }
}

/**
 * An email provider that, like the payment provider, drops a send whose idempotency key it
 * has seen. Some addresses bounce for good; invoices in the outage range fail their first
 * `outageAttempts` sends until `recover()` is called.
 */
export class EmailService {
  readonly sent: number[] = [];
  private readonly keys = new Set<string>();
  private readonly attempts = new Map<number, number>();
  private recovered = false;

  constructor(
    private readonly faults: FaultPlan,
    private readonly outage: { from: number; to: number },
  ) {}

  async send(invoice: number, key?: string): Promise<void> {
    const n = (this.attempts.get(invoice) ?? 0) + 1;
    this.attempts.set(invoice, n);
    await Promise.resolve();
    if (this.faults.is('badEmail', invoice)) {
      throw new NonRetryableError(`mailbox for invoice ${invoice} does not exist (550)`, {
        code: 'EMAIL_BOUNCED',
      });
    }
    if (!this.recovered && invoice >= this.outage.from && invoice < this.outage.to) {
      throw new EmailUnavailableError();
    }
    if (key !== undefined) {
      if (this.keys.has(key)) return;
      this.keys.add(key);
    }
    this.sent.push(invoice);
  }

  /** The provider is back: the outage range sends again. */
  recover(): void {
    this.recovered = true;
  }

  sentTwice(): number {
    return countRepeats(this.sent);
  }
}

function countRepeats(values: readonly number[]): number {
  const seen = new Map<number, number>();
  for (const v of values) seen.set(v, (seen.get(v) ?? 0) + 1);
  let twice = 0;
  for (const n of seen.values()) if (n > 1) twice++;
  return twice;
}
