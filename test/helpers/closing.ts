import { expect } from 'vitest';

/**
 * Closes through `close` twice at once and once after: every call must return the one
 * closing (a second call neither closes again nor returns before the first has finished).
 */
export async function expectOneClosing(close: () => Promise<void> | undefined): Promise<void> {
  const closing = close();
  expect(closing).toBeInstanceOf(Promise);
  expect(close()).toBe(closing);
  await closing;
  expect(close()).toBe(closing);
}
