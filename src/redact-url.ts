/**
 * `url` with its secrets hidden, for messages, reports and output: the password of its user
 * info (also of a URL given as a query value, such as a DynamoDB `endpoint`), and the value
 * of any query parameter named like a secret (`password`, `token`...).
 *
 * Never leaking on doubt. A password pasted unencoded (with `/`, `?`, `#`, `&`, `=`, `,` or
 * `@` in it), or a typo in the scheme, is often why the text is not a URL, or why a parser
 * reads it as another host with the password's tail in its path or query. So the user info
 * is trusted only where a URL parser finds it and nothing else is in doubt: the text parses,
 * its path holds no `@`, and an `@` past the authority sits in a `name=value` of the query.
 * Then the user name stays and the password goes. Otherwise everything from the scheme to
 * the last `@` is hidden, whatever it held (`postgres://***@db:5432/app`): no part of a
 * password can come after that `@`.
 */
export function redactUrl(url: string): string {
  const text = hideQuery(url.replace(LEADING_SPACE, ''));
  // The embedded store's forms carry no credentials (and a file name may hold an "@").
  if (NO_CREDENTIALS.test(text) || !text.includes('@')) return text;
  const scheme = SCHEME.exec(text)?.[0] ?? '';
  if (scheme !== '' && parses(text)) {
    const rest = text.slice(scheme.length);
    const authorityEnd = firstOf(rest, '/?#');
    const authority = rest.slice(0, authorityEnd);
    const pathEnd = authorityEnd + firstOf(rest.slice(authorityEnd), '?#');
    const path = rest.slice(authorityEnd, pathEnd);
    const after = rest.slice(pathEnd);
    if (!path.includes('@') && onlyAddresses(after)) {
      const at = authority.lastIndexOf('@');
      if (at < 0) return text;
      const colon = authority.indexOf(':');
      if (colon < 0 || colon > at) return text;
      return `${scheme}${authority.slice(0, colon)}:***${rest.slice(at)}`;
    }
  }
  const last = text.lastIndexOf('@');
  const userInfo = text.slice(scheme.length, last);
  // A plain "user:password" before the only "@": the user name stays.
  if (text.indexOf('@') === last && PLAIN_USER_INFO.test(userInfo) && userInfo.includes(':')) {
    return `${scheme}${userInfo.slice(0, userInfo.indexOf(':'))}:***${text.slice(last)}`;
  }
  return `${scheme}***${text.slice(last)}`;
}

/** Secret-named query values hidden, and URLs given as query values redacted in turn. */
function hideQuery(text: string): string {
  return text
    .replace(SECRET_PARAMETER, '$1***')
    .replace(URL_PARAMETER, (_match, name: string, value: string) => `${name}${redactUrl(value)}`);
}

/**
 * Whether every `@` of a query (and fragment) is inside a `name=value` of the query: an
 * address. An `@` in a segment without `=`, or in the fragment, may end a password that held
 * a `?` or a `#`.
 */
function onlyAddresses(queryAndFragment: string): boolean {
  const hash = queryAndFragment.indexOf('#');
  if (hash >= 0 && queryAndFragment.slice(hash).includes('@')) return false;
  const query = hash >= 0 ? queryAndFragment.slice(0, hash) : queryAndFragment;
  return query
    .slice(1)
    .split('&')
    .every((segment) => {
      const at = segment.indexOf('@');
      const equals = segment.indexOf('=');
      return at < 0 || (equals >= 0 && equals < at);
    });
}

function firstOf(text: string, chars: string): number {
  for (let i = 0; i < text.length; i++) if (chars.includes(text[i] as string)) return i;
  return text.length;
}

function parses(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
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
