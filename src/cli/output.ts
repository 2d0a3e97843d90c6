import { headOf } from '../clip-text.js';
/** Text helpers shared by the CLI commands that print tables of stored things. */

/**
 * An error's message, with its cause's message when it has one (a driver's words). Not a
 * JSON parser's: it quotes the text it failed on, a stored result or step, which the CLI
 * prints only when asked (`--show-result`).
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const { cause } = error;
  const message = error.message || error.name;
  const said =
    cause instanceof SyntaxError
      ? ' (not valid JSON)'
      : // The stores' errors quote their driver's words already: said once is enough.
        cause instanceof Error && cause.message !== '' && !message.includes(cause.message)
        ? ` (${cause.message})`
        : '';
  return `${message}${said}`;
}

/** A time as ISO 8601, or `-` for 0 (never set). */
export function isoTime(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : '-';
}

/** `text` on one line, cut to `width` characters with an ellipsis. */
export function clip(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length <= width ? flat : `${headOf(flat, width - 1)}…`;
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function textTable(head: readonly string[], rows: readonly string[][]): string {
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}
