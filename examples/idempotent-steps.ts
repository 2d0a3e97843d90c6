// An operation that charges a card and then writes an order. The order write fails once
// after the charge; the retry resumes after the stored charge step instead of charging again.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { idempotent } from '../src/index.js';
import { createSqliteStore } from '../src/stores/sqlite/index.js';

const store = createSqliteStore({
  path: join(mkdtempSync(join(tmpdir(), 'reprocess-example-')), 'idem.sqlite'),
});
const charges: string[] = [];
let orderWrites = 0;

const pay = idempotent(
  async (req: { requestId: string; customer: string; amount: number }, ctx) => {
    const charge = await ctx.step('charge', async () => {
      // A real provider takes its own idempotency key: pass a stable derived one.
      charges.push(ctx.keyFor('charge'));
      return { id: `ch_${charges.length}`, amount: req.amount };
    });
    await ctx.step('order', async () => {
      orderWrites++;
      if (orderWrites === 1)
        throw Object.assign(new Error('order write timed out'), { code: 'ETIMEDOUT' });
      return { order: 1 };
    });
    return { charge: charge.id };
  },
  { store, key: 'requestId', scope: { operation: 'pay', principal: (req) => req.customer } },
);

const request = { requestId: 'req-42', customer: 'cus_1', amount: 1200 };
try {
  await pay(request);
} catch (error) {
  console.log(`first attempt failed after the charge: ${(error as Error).message}`);
}
const second = await pay.run(request); // the client retries with the same request id
const third = await pay.run(request); // and once more: a replay
console.log(`second: ${JSON.stringify(second.value)} replayed=${second.replayed}`);
console.log(`third: ${JSON.stringify(third.value)} replayed=${third.replayed}`);
console.log(`charges made: ${charges.length}`);
if (charges.length !== 1 || !third.replayed) throw new Error('expected exactly one charge');
await store.close?.();
console.log('ok');
