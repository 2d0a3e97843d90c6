/**
 * The first `max` UTF-16 units of `text`, one fewer when the cut would split a surrogate
 * pair: a cut never leaves a lone surrogate, which would read back as U+FFFD once written as
 * UTF-8 (a header, a stored record), or be refused by a store.
 */
export function headOf(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = max > 0 && isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max;
  return text.slice(0, Math.max(0, end));
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
