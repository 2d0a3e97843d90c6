/**
 * Calls an observer (a hook, a listener, an error reporter) so that it can never change what
 * happens to what it observes: an exception it throws is dropped, and so is the rejection of
 * a promise it returns. An `async` listener is easy to write (TypeScript accepts one where a
 * `void` function is asked for), and its rejection, left unhandled, would end the process
 * under Node's default.
 */
export function observe<A extends unknown[]>(
  observer: ((...args: A) => unknown) | undefined,
  ...args: A
): void {
  if (observer === undefined) return;
  try {
    const returned = observer(...args);
    if (typeof returned === 'object' && returned !== null) {
      const then = (returned as { then?: unknown }).then;
      if (typeof then === 'function') then.call(returned, undefined, ignore);
    }
  } catch {
    // Observing never changes the outcome.
  }
}

function ignore(): void {}
