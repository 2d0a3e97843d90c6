/**
 * `url` with its secrets hidden, for messages, reports and output: the password of its user
 * info (also of a URL nested in a query value, such as a DynamoDB `endpoint`), and the value
 * of any query parameter named like a secret (`password`, `token`...). A comma-separated list
 * of URLs (NATS servers) is redacted one URL at a time.
 *
 * Decided by the text's shape, since a password pasted unencoded (with `/`, `?`, `#`, `:` or
 * `@` in it) is often why the text is not a URL, or why a parser reads it as another host with
 * the password's tail in its path. The `@` that ends the user info is the one before the
 * query; with several there, which one ends it cannot be told, and everything after the
 * scheme is hidden. An `@` only past a `?` is an address in the query when the text parses as
 * a URL, and otherwise the end of a password holding a `?`.
 */
export function redactUrl(url: string): string {
  const text = url.replace(LEADING_SPACE, '');
  return text.split(NEXT_URL).map(redactOne).join(',');
}

function redactOne(text: string): string {
  const scheme = SCHEME.exec(text)?.[1];
  if (scheme === undefined) {
    // No scheme (a NATS "user:pass@host:port"): the same rule without one.
    const ats = count(text, '@');
    if (ats > 1) return '***';
    return hideParts(ats === 1 ? text.replace(BARE_USER_INFO, '$1:***@') : text);
  }
  const rest = text.slice(scheme.length + 3);
  const query = rest.indexOf('?');
  const before = count(query < 0 ? rest : rest.slice(0, query), '@');
  const all = count(rest, '@');
  if (before > 1) return `${scheme}://***`;
  if (before === 1) return hideParts(text.replace(USER_INFO, '$1:***@'));
  if (all === 0 || parses(text)) return hideParts(text);
  // Not a URL, with an "@" only past a "?": a password holding a "?".
  return all === 1 ? hideParts(text.replace(USER_INFO, '$1:***@')) : `${scheme}://***`;
}

/** Secret-named query values, and the password of any URL nested in the text. */
function hideParts(text: string): string {
  return text.replace(SECRET_PARAMETER, '$1***').replace(NESTED_USER_INFO, '$1:***@');
}

function parses(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}

function count(text: string, char: string): number {
  let n = 0;
  for (const c of text) if (c === char) n++;
  return n;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: leading control characters are the point
const LEADING_SPACE = /^[\u0000-\u0020]+/;
/** A comma followed by another URL (a list of NATS servers). */
const NEXT_URL = /,(?=\s*[a-z][a-z0-9+.-]*:\/\/)/i;
const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
/** `scheme://user:<password>@`, the password running to the first `@`. */
const USER_INFO = /^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):[^@]*@/i;
/** `user:<password>@` without a scheme. */
const BARE_USER_INFO = /^([^:@/?#\s]*):[^@]*@/;
/**
 * `scheme://user:<password>@` anywhere in the text (a URL in a query value), its password not
 * crossing a "/", "?" or "&": a port and path followed by an address in the query is not one.
 */
const NESTED_USER_INFO = /([a-z][a-z0-9+.-]*:\/\/[^:@/?#\s&=]*):[^@\s&/?#]*@/gi;
/** `?password=…`, `&api_token=…`: a query parameter named like a secret, and its value. */
const SECRET_PARAMETER = /([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&#]*/gi;
