import { describe, expect, it } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import { idempotent } from '../../src/idempotency/idempotent.js';
import type { IdempotencyContext } from '../../src/idempotency/types.js';
import { settle, setup } from './fixtures.js';

/*
 * The pattern reprocess replaces: look the request up, run it, store the answer.
 *
 *   const seen = await kv.get(id); if (seen) return seen;
 *   const invoice = await invoices.create(...);
 *   await kv.put(id, invoice);
 *
 * It looks idempotent and is not: two duplicates that arrive together both miss the
 * lookup, and a failure between the effect and the put leaves nothing to find on the retry.
 */

interface InvoiceRequest {
  requestId: string;
  customer: string;
  amount: number;
}

interface Invoice {
  id: string;
  customer: string;
  amount: number;
}

/** A fake invoicing API: it creates invoices and, like Stripe, dedupes by an optional key. */
class InvoiceService {
  readonly invoices: Invoice[] = [];
  private readonly byKey = new Map<string, Invoice>();
  /** When set, the next call creates the invoice but its response is lost (a timeout). */
  dropNextResponse = false;

  async create(customer: string, amount: number, idempotencyKey?: string): Promise<Invoice> {
    await tick();
    let invoice = idempotencyKey === undefined ? undefined : this.byKey.get(idempotencyKey);
    if (invoice === undefined) {
      invoice = { id: `inv_${this.invoices.length + 1}`, customer, amount };
      this.invoices.push(invoice);
      if (idempotencyKey !== undefined) this.byKey.set(idempotencyKey, invoice);
    }
    if (this.dropNextResponse) {
      this.dropNextResponse = false;
      throw Object.assign(new Error('invoice API timed out'), { code: 'ETIMEDOUT' });
    }
    return invoice;
  }
}

/** A fake ledger write that can time out once, after the invoice was created. */
class Ledger {
  readonly entries: string[] = [];
  failNext = false;
  async record(invoice: Invoice): Promise<void> {
    await tick();
    if (this.failNext) {
      this.failNext = false;
      throw Object.assign(new Error('ledger write timed out'), { code: 'ETIMEDOUT' });
    }
    this.entries.push(invoice.id);
  }
}

/** A key-value store with the usual get and put, and nothing atomic between them. */
class NaiveKv {
  private readonly data = new Map<string, Invoice>();
  async get(key: string): Promise<Invoice | undefined> {
    await tick();
    return this.data.get(key);
  }
  async put(key: string, value: Invoice): Promise<void> {
    await tick();
    this.data.set(key, value);
  }
}

async function tick(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

/** What a client does on a timeout: the same request again, up to `attempts` times. */
async function withClientRetries<T>(call: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts || (error as { code?: string }).code !== 'ETIMEDOUT') throw error;
    }
  }
}

function naiveHandler(kv: NaiveKv, service: InvoiceService, ledger: Ledger) {
  return async (req: InvoiceRequest): Promise<Invoice> => {
    const seen = await kv.get(req.requestId);
    if (seen) return seen;
    const invoice = await service.create(req.customer, req.amount);
    await ledger.record(invoice);
    await kv.put(req.requestId, invoice);
    return invoice;
  };
}

function guardedHandler(service: InvoiceService, ledger: Ledger) {
  const { clock, store } = setup();
  const handler = idempotent(
    async (req: InvoiceRequest, ctx: IdempotencyContext) => {
      const invoice = await ctx.step('create-invoice', () =>
        service.create(req.customer, req.amount, ctx.keyFor('create-invoice')),
      );
      await ctx.step('ledger', () => ledger.record(invoice));
      return invoice;
    },
    { store, clock, key: 'requestId', scope: 'create-invoice' },
  );
  return { handler, clock };
}

const request: InvoiceRequest = { requestId: 'req-1', customer: 'acme', amount: 4200 };

describe('the naive get-then-run-then-put pattern', () => {
  it('creates two invoices for two concurrent duplicates', async () => {
    const service = new InvoiceService();
    const handle = naiveHandler(new NaiveKv(), service, new Ledger());
    await Promise.all([handle(request), handle(request)]);
    expect(service.invoices).toHaveLength(2);
  });

  it('creates two invoices when the invoice API times out after creating one', async () => {
    const service = new InvoiceService();
    const handle = naiveHandler(new NaiveKv(), service, new Ledger());
    service.dropNextResponse = true;
    await withClientRetries(() => handle(request));
    expect(service.invoices).toHaveLength(2);
  });

  it('creates two invoices when a later write times out after the invoice', async () => {
    const service = new InvoiceService();
    const ledger = new Ledger();
    const handle = naiveHandler(new NaiveKv(), service, ledger);
    ledger.failNext = true;
    await withClientRetries(() => handle(request));
    expect(service.invoices).toHaveLength(2);
  });
});

describe('the same scenarios with idempotent() and steps', () => {
  it('creates exactly one invoice for concurrent duplicates', async () => {
    const service = new InvoiceService();
    const ledger = new Ledger();
    const { handler } = guardedHandler(service, ledger);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => handler(request)));

    expect(service.invoices).toHaveLength(1);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') {
        expect(isReprocessError(r.reason, ErrorCode.IDEMPOTENCY_IN_PROGRESS)).toBe(true);
      }
    }
    // Once done, every duplicate gets the first invoice back.
    const again = await handler.run(request);
    expect(again).toMatchObject({ value: { id: 'inv_1' }, replayed: true });
    expect(ledger.entries).toEqual(['inv_1']);
  });

  it('duplicates that wait all receive the one invoice', async () => {
    const service = new InvoiceService();
    const { clock, store } = setup();
    const handler = idempotent(
      async (req: InvoiceRequest, ctx: IdempotencyContext) =>
        ctx.step('create-invoice', () =>
          service.create(req.customer, req.amount, ctx.keyFor('create-invoice')),
        ),
      {
        store,
        clock,
        key: 'requestId',
        scope: 'create-invoice',
        onInProgress: { wait: '10s', poll: '50ms' },
      },
    );
    const all = Promise.all(Array.from({ length: 5 }, () => handler(request)));
    await settle();
    await clock.advance(200);
    const invoices = await all;
    expect(new Set(invoices.map((i) => i.id))).toEqual(new Set(['inv_1']));
    expect(service.invoices).toHaveLength(1);
  });

  it('creates exactly one invoice when the invoice API times out after creating it', async () => {
    const service = new InvoiceService();
    const ledger = new Ledger();
    const { handler } = guardedHandler(service, ledger);
    service.dropNextResponse = true;
    const invoice = await withClientRetries(() => handler(request));
    // The step's work ran twice, but with the same derived key: the API deduplicated it.
    expect(service.invoices).toHaveLength(1);
    expect(invoice.id).toBe('inv_1');
    expect(ledger.entries).toEqual(['inv_1']);
  });

  it('creates exactly one invoice when a later write times out after the invoice', async () => {
    const service = new InvoiceService();
    const ledger = new Ledger();
    const { handler } = guardedHandler(service, ledger);
    ledger.failNext = true;
    const calls: number[] = [];
    const spy = service.create.bind(service);
    service.create = async (...args) => {
      calls.push(1);
      return spy(...args);
    };
    const invoice = await withClientRetries(() => handler(request));
    expect(service.invoices).toHaveLength(1);
    // The retry resumed after the stored step: the invoice API was called once.
    expect(calls).toHaveLength(1);
    expect(invoice.id).toBe('inv_1');
    expect(ledger.entries).toEqual(['inv_1']);
  });
});
