/** Most links of a cause chain looked at: a longer chain is cut there. */
export const MAX_CAUSE_DEPTH = 8;

/**
 * The objects of `error`'s cause chain: `error`, its `cause`, that one's `cause`, and so on.
 * The chain ends at a value that is not an object, at a link seen before (a cycle), at a
 * `cause` getter that throws, or after {@link MAX_CAUSE_DEPTH} links.
 */
export function causeChain(error: unknown): object[] {
  const links: object[] = [];
  let current = error;
  while (
    links.length < MAX_CAUSE_DEPTH &&
    typeof current === 'object' &&
    current !== null &&
    !links.includes(current)
  ) {
    links.push(current);
    try {
      current = (current as { cause?: unknown }).cause;
    } catch {
      break;
    }
  }
  return links;
}
