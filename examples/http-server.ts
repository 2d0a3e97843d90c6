// An HTTP API behind the Idempotency-Key middleware, and a client whose retries carry the
// same key: the response to a repeat is replayed, the handler runs once.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMemoryStore } from '../src/index.js';
import { createRetryingFetch, idempotencyContext, nodeIdempotencyKey } from '../src/http/index.js';

const store = createMemoryStore();
let executions = 0;

const server = createServer(
  nodeIdempotencyKey(
    async (req, res) => {
      executions++;
      const ctx = idempotencyContext(req);
      const payment = await ctx?.step('charge', async () => ({ id: `pay_${executions}` }));
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(payment));
    },
    { store, scope: (req) => String(req.headers['x-tenant'] ?? '') || undefined },
  ),
);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/payments`;

const send = createRetryingFetch({ deadline: '3s' });
const init = {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-tenant': 'acme', 'idempotency-key': 'order-7' },
  body: JSON.stringify({ amount: 1200 }),
};
const first = await send(url, init);
const repeat = await send(url, init);
console.log(`first: ${first.status} ${await first.text()}`);
console.log(
  `repeat: ${repeat.status} ${await repeat.text()} replayed=${repeat.headers.get('idempotent-replayed')}`,
);
const other = await fetch(url, { ...init, body: JSON.stringify({ amount: 9999 }) });
console.log(`same key, other body: ${other.status} ${other.headers.get('content-type')}`);
console.log(`handler executions: ${executions}`);
server.close();
if (executions !== 1 || other.status !== 422) throw new Error('expected one execution and a 422');
console.log('ok');
