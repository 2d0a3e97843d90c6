/**
 * Collects the process's unhandled promise rejections while `body` runs, and for a few turns
 * of the event loop after it (Node reports one once the microtasks of a turn are done).
 */
export async function unhandledDuring(body: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const collect = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', collect);
  try {
    await body();
    for (let turn = 0; turn < 3; turn++) await new Promise((done) => setImmediate(done));
  } finally {
    process.off('unhandledRejection', collect);
  }
  return seen;
}
