// A string needs escaping in JSON when it has a quote, a backslash, a control character
// (below U+0020) or a UTF-16 surrogate (JSON.stringify escapes a lone one; a pair goes to
// JSON.stringify as well, rarer than worth telling apart).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/**
 * `JSON.stringify(text)` for a string, byte for byte. Most strings written into stored
 * text (keys, member names, short values) need no escaping, and testing for that first then
 * quoting is two to three times faster than the generic call on Node 20 (measured: a 16
 * character string, ~140 ns down to ~55 ns).
 */
export function quoteJson(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`;
}
