/**
 * `url` with its secrets hidden, for messages, reports and output: the password of its user
 * info (also of a URL given as a query value, such as a DynamoDB `endpoint`), and the value
 * of any query parameter named like a secret (`password`, `token`...).
 *
 * Decided by the text's shape, never leaking on doubt. A password pasted unencoded (with
 * `/`, `?`, `#`, `:`, `,` or `@` in it), or a typo in the scheme, is often why the text is not
 * a URL, or why a parser reads it as another host with the password's tail in its path. So:
 * an `@` inside a query value (`?user=me@example.com`) is an address; any other `@` may end
 * user info. With exactly one such `@` and a plain `user:password` before it, the user name
 * stays and the password goes. Otherwise everything from the scheme to the last such `@` is
 * hidden, whatever it held: no part of a password can be after that `@`.
 */
export function redactUrl(url: string): string {
  const text = url.replace(LEADING_SPACE, '');
  // The embedded store's forms carry no credentials (and a file name may hold an "@").
  if (NO_CREDENTIALS.test(text)) return text;
  const hidden = hideQuery(text);
  const ats = userInfoEnds(hidden);
  if (ats.length === 0) return hidden;
  const last = ats[ats.length - 1] as number;
  const scheme = SCHEME.exec(hidden)?.[0] ?? '';
  const userInfo = hidden.slice(scheme.length, last);
  if (ats.length === 1 && PLAIN_USER_INFO.test(userInfo)) {
    const colon = userInfo.indexOf(':');
    return colon < 0 ? hidden : `${scheme}${userInfo.slice(0, colon)}:***${hidden.slice(last)}`;
  }
  return `${scheme}***${hidden.slice(last)}`;
}

/** Secret-named query values hidden, and URLs given as query values redacted in turn. */
function hideQuery(text: string): string {
  return text
    .replace(SECRET_PARAMETER, '$1***')
    .replace(URL_PARAMETER, (_match, name: string, value: string) => `${name}${redactUrl(value)}`);
}

/** Positions of the `@` that may end user info: all but those inside a query value. */
function userInfoEnds(text: string): number[] {
  const ends: number[] = [];
  let inValue = false;
  let inQuery = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '?' || c === '&') {
      inQuery = true;
      inValue = false;
    } else if (c === '=' && inQuery) {
      inValue = true;
    } else if (c === '@' && !inValue) {
      ends.push(i);
    }
  }
  return ends;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: leading control characters are the point
const LEADING_SPACE = /^[\u0000-\u0020\u00a0\ufeff]+/;
const NO_CREDENTIALS = /^(?:sqlite:|memory:?$|key-value$)/i;
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
/** `user` or `user:password` with nothing a parser would end the user info at. */
const PLAIN_USER_INFO = /^[^/?#@]*$/;
/** `?password=…`, `&api_token=…`: a query parameter named like a secret, and its whole value. */
const SECRET_PARAMETER = /([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&]*/gi;
/** `?endpoint=http://…`: a query value that is itself a URL (to its end or the next `&`). */
const URL_PARAMETER = /([?&][^=&#]*=)([a-z][a-z0-9+.-]*:\/\/[^&]*)/gi;
