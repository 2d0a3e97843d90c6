/**
 * `url` with its secrets hidden, for messages, reports and output: the user info's password,
 * and the value of any query parameter named like a secret (`password`, `token`...) or holding
 * an encoded `@` (an encoded URL with credentials, such as a DynamoDB `endpoint`).
 *
 * Never leaking on doubt. A password pasted unencoded (with `/`, `?`, `#`, `&`, `=`, `,` or
 * `@` in it), a typo in the scheme, or a URL given as a query value defeat any parse of where
 * the user info ends, so none is attempted: everything from the scheme to the LAST `@` of the
 * text is hidden, keeping only a plain user name before it (`postgres://app:***@db:5432/x`).
 * No part of a password can come after that `@`. The price: a URL whose only `@` is an
 * address in its query or path shows only what follows that `@`.
 */
export function redactUrl(url: string): string {
  const text = url.replace(LEADING_SPACE, '');
  // The embedded store's forms carry no credentials (and a file name may hold an "@").
  if (NO_CREDENTIALS.test(text)) return text;
  const last = text.lastIndexOf('@');
  if (last < 0) return hideQuery(text);
  const scheme = SCHEME.exec(text)?.[0] ?? '';
  const userInfo = text.slice(scheme.length, last);
  const colon = userInfo.indexOf(':');
  const user = colon < 0 ? undefined : userInfo.slice(0, colon);
  const kept = user !== undefined && PLAIN_USER.test(user) ? `${user}:` : '';
  return `${scheme}${kept}***${hideQuery(text.slice(last))}`;
}

/** Query values named like a secret, or holding an encoded "@", hidden. */
function hideQuery(text: string): string {
  return text.replace(SECRET_PARAMETER, '$1***').replace(ENCODED_AT_PARAMETER, '$1***');
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: leading control characters are the point
const LEADING_SPACE = /^[\u0000-\u0020\u00a0\ufeff]+/;
const NO_CREDENTIALS = /^(?:sqlite:|memory:?$|key-value$)/i;
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
/** A user name: nothing a parser would end it at, and no "@". */
const PLAIN_USER = /^[^/?#@]*$/;
/** `?password=…`, `&api_token=…`: a query parameter named like a secret, and its whole value. */
const SECRET_PARAMETER = /([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&]*/gi;
/** `?endpoint=http%3A%2F%2Fu%3Apw%40host`: a value holding an encoded "@". */
const ENCODED_AT_PARAMETER = /([?&][^=&#]*=)[^&]*%40[^&]*/gi;
