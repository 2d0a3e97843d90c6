/**
 * Reading the `Idempotency-Key` request header.
 *
 * The IETF draft (draft-ietf-httpapi-idempotency-key-header) defines the field as a
 * Structured Field Item whose value is a String: `Idempotency-Key: "8e03978e-40d5"`. Many
 * clients (and Stripe's own SDKs) send the bare value instead: `Idempotency-Key: 8e03978e-40d5`.
 * Both are accepted. Several values are refused: HTTP joins repeated fields with a comma, so a
 * comma outside a quoted string means the client sent two keys (or a key a server cannot tell
 * from two), and guessing which one counts would make two requests look like one.
 */

/** The field name, as the draft spells it. */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** Longest accepted key, in characters (the key is ASCII, so also in bytes). */
export const MAX_HEADER_KEY_LENGTH = 255;

/** What the header held. */
export type ParsedKeyHeader =
  | { kind: 'absent' }
  | { kind: 'key'; key: string }
  | { kind: 'invalid'; reason: string };

const ABSENT: ParsedKeyHeader = { kind: 'absent' };

/**
 * Parses an `Idempotency-Key` field value: the structured-field string form (`"abc"`, with
 * `\"` and `\\` escapes and optional parameters, which are ignored) or the plain form (`abc`).
 * `null`/`undefined` is `absent`; an array (Node's `headersDistinct`) with more than one entry
 * is several headers. A key must be 1 to 255 printable ASCII characters (space allowed
 * inside a quoted key); anything else is `invalid` with a reason fit for a client.
 */
export function parseIdempotencyKeyHeader(
  value: string | readonly string[] | null | undefined,
): ParsedKeyHeader {
  if (value === null || value === undefined) return ABSENT;
  let text: string;
  if (typeof value === 'string') {
    text = value;
  } else {
    if (value.length === 0) return ABSENT;
    if (value.length > 1) return invalid('several Idempotency-Key headers were sent; send one');
    text = value[0] as string;
  }
  text = trimOws(text);
  if (text.length === 0) return invalid('the Idempotency-Key header is empty');
  return text.charCodeAt(0) === QUOTE ? parseQuoted(text) : parsePlain(text);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const SEMICOLON = 0x3b;

function parseQuoted(text: string): ParsedKeyHeader {
  let key = '';
  let i = 1;
  for (;;) {
    if (i >= text.length) return invalid('the quoted Idempotency-Key has no closing quote');
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) {
      const next = text.charCodeAt(i + 1);
      if (next !== QUOTE && next !== BACKSLASH) {
        return invalid('the quoted Idempotency-Key has an escape other than \\" or \\\\');
      }
      key += text[i + 1];
      i += 2;
      continue;
    }
    if (c === QUOTE) break;
    if (c < 0x20 || c > 0x7e) return badCharacter(c, i - 1);
    key += text[i];
    i++;
  }
  const rest = trimOws(text.slice(i + 1));
  if (rest.length > 0) {
    if (rest.charCodeAt(0) === COMMA || hasUnquotedComma(rest)) {
      return invalid('several Idempotency-Key values were sent; send one');
    }
    if (rest.charCodeAt(0) !== SEMICOLON) {
      return invalid('unexpected characters after the quoted Idempotency-Key');
    }
  }
  return checked(key);
}

function parsePlain(text: string): ParsedKeyHeader {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === COMMA) {
      return invalid(
        'several Idempotency-Key values were sent (a comma separates values; quote a key that contains one)',
      );
    }
    if (c === QUOTE) return invalid('the Idempotency-Key has a stray quote');
    if (c < 0x20 || c > 0x7e) return badCharacter(c, i);
  }
  return checked(text);
}

function checked(key: string): ParsedKeyHeader {
  if (key.length === 0) return invalid('the Idempotency-Key is empty');
  if (key.length > MAX_HEADER_KEY_LENGTH) {
    return invalid(
      `the Idempotency-Key is ${key.length} characters long; at most ${MAX_HEADER_KEY_LENGTH} are allowed`,
    );
  }
  return { kind: 'key', key };
}

function badCharacter(code: number, index: number): ParsedKeyHeader {
  const hex = code.toString(16).toUpperCase().padStart(4, '0');
  const what = code < 0x20 || code === 0x7f ? 'a control character' : 'a non-ASCII character';
  return invalid(
    `the Idempotency-Key contains ${what} (U+${hex} at index ${index}); only printable ASCII is allowed`,
  );
}

function hasUnquotedComma(text: string): boolean {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quoted && c === BACKSLASH) {
      i++;
      continue;
    }
    if (c === QUOTE) quoted = !quoted;
    else if (c === COMMA && !quoted) return true;
  }
  return false;
}

/** Optional whitespace around a field value: spaces and tabs only. */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function invalid(reason: string): ParsedKeyHeader {
  return { kind: 'invalid', reason };
}

/** Formats a key as the draft's structured-field string (`"abc"`), escaping `"` and `\`. */
export function formatIdempotencyKey(key: string): string {
  return `"${key.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
