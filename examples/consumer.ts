// A queue consumer: a duplicate publication produces one effect, a transient failure is
// redelivered after a backoff, a permanent one is quarantined with its history.
import { createConsumer, createMemorySource } from '../src/consumer/index.js';
import { NonRetryableError, createMemoryStore } from '../src/index.js';

const source = createMemorySource({ name: 'emails' });
const sent: string[] = [];
let flaky = 0;

const consumer = createConsumer<{ to: string }>({
  source,
  idempotency: { store: createMemoryStore() },
  retry: { maxAttempts: 3, base: '10ms', cap: '50ms' },
  handler: async (message, ctx) => {
    if (message.body.to === 'nobody@invalid') throw new NonRetryableError('mailbox does not exist');
    if (message.body.to === 'flaky@example.com' && flaky++ === 0) {
      throw Object.assign(new Error('smtp timeout'), { code: 'ETIMEDOUT' });
    }
    await ctx.step('send', async () => sent.push(message.body.to));
  },
});
await consumer.start();

source.publish({ id: 'm1', body: { to: 'ada@example.com' } });
source.publish({ id: 'm1', body: { to: 'ada@example.com' } }); // the same message again
source.publish({ id: 'm2', body: { to: 'flaky@example.com' } });
source.publish({ id: 'm3', body: { to: 'nobody@invalid' } });

for (let i = 0; i < 200 && !source.isIdle(); i++) await new Promise((r) => setTimeout(r, 10));
await consumer.stop();
const quarantined = await source.deadLetters.list();
console.log(`sent: ${sent.join(', ')}`);
console.log(
  `quarantined: ${quarantined.map((q) => `${q.id} (${q.history.reason}: ${q.history.lastError.message})`).join(', ')}`,
);
if (sent.length !== 2 || quarantined.length !== 1)
  throw new Error('expected two emails and one quarantined message');
console.log('ok');
