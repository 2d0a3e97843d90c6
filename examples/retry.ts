// Retry a flaky call with backoff, jitter and a deadline; stop at once on a permanent error.
import { NonRetryableError, RetryExhaustedError, retry } from '../src/index.js';

let calls = 0;
async function flakyInventory(): Promise<{ sku: string; stock: number }> {
  calls++;
  if (calls < 3) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  return { sku: 'A-1', stock: 7 };
}

const item = await retry(() => flakyInventory(), {
  maxAttempts: 4,
  base: '20ms',
  cap: '200ms',
  jitter: 'full',
  deadline: '2s',
  onRetry: ({ attempt, delay }) =>
    console.log(`attempt ${attempt} failed; retrying in ${Math.round(delay)} ms`),
});
console.log(`got ${item.sku} after ${calls} calls`);

try {
  await retry(
    () => {
      throw new NonRetryableError('card declined');
    },
    { maxAttempts: 5 },
  );
} catch (error) {
  // A permanent failure is not retried and comes back as it was thrown.
  console.log(`permanent failure, not retried: ${(error as Error).message}`);
  if (error instanceof RetryExhaustedError) throw new Error('should not have retried');
}
console.log('ok');
