import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { idempotencyContext } from '../http/context.js';
import { nodeIdempotencyKey } from '../http/node.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { IdempotencyContext } from '../idempotency/types.js';
import type { FaultPlan } from './faults.js';
import { type Charge, OrderBook, type PaymentProvider, ProviderBusyError } from './world.js';

export interface PayRequest {
  invoice: number;
  customer: string;
  amount: number;
}

export interface InvoiceApi {
  url: string;
  orders: OrderBook;
  /** Handler runs (attempts that reached the business code). */
  executions: number;
  /**
   * Resolves once no request is being handled: a handler its client gave up on (a timeout)
   * still writes its order and publishes its receipt, and must be counted.
   */
  settled(): Promise<void>;
  close(): Promise<void>;
}

export interface InvoiceApiOptions {
  provider: PaymentProvider;
  faults: FaultPlan;
  /** Publishes the receipt job for a paid invoice. */
  publishReceipt: (invoice: PayRequest) => void;
  /** The idempotency store; without one the API is unprotected. */
  store?: IdempotencyStore;
}

async function readJson(req: IncomingMessage): Promise<PayRequest> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as PayRequest;
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/**
 * The invoice API: POST /invoices/pay charges the card, writes the order and queues the
 * receipt. Protected, it runs behind the Idempotency-Key middleware, with each effect in a
 * step and the derived key passed to the provider; unprotected, it just does the three.
 */
export async function startInvoiceApi(options: InvoiceApiOptions): Promise<InvoiceApi> {
  const orders = new OrderBook(options.faults);
  const api = { executions: 0 };

  async function pay(req: IncomingMessage, res: ServerResponse): Promise<void> {
    api.executions++;
    const input = await readJson(req);
    const ctx: IdempotencyContext | undefined = options.store ? idempotencyContext(req) : undefined;
    const once = <T>(name: string, work: () => Promise<T>): Promise<T> =>
      ctx ? ctx.step(name, work) : work();
    try {
      const charge: Charge = await once('charge', () =>
        options.provider.charge(input, ctx?.keyFor('charge')),
      );
      const order = await once('order', () => orders.write(input.invoice, charge));
      await once('receipt', async () => {
        options.publishReceipt(input);
        return true;
      });
      send(res, 201, { invoice: input.invoice, charge: charge.id, order: order.order });
    } catch (error) {
      if (error instanceof ProviderBusyError) {
        send(
          res,
          503,
          { error: error.message },
          { 'retry-after': String(Math.ceil(error.retryAfterMs / 1000)) },
        );
        return;
      }
      send(res, 500, { error: (error as Error).message });
    }
  }

  const listener = options.store
    ? nodeIdempotencyKey(pay, {
        store: options.store,
        scope: (req) => String(req.headers['x-customer'] ?? '') || undefined,
        lease: '2s',
        onListenerError: () => undefined,
      })
    : pay;
  const handling = new Set<Promise<void>>();
  const server: Server = createServer((req, res) => {
    const handled = Promise.resolve(listener(req, res))
      .catch(() => {
        if (!res.headersSent) send(res, 500, { error: 'internal' });
      })
      .finally(() => handling.delete(handled));
    handling.add(handled);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/invoices/pay`,
    orders,
    get executions() {
      return api.executions;
    },
    async settled() {
      while (handling.size > 0) await Promise.all(handling);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
