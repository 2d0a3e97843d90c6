/**
 * `url` with its secrets hidden, for messages, reports and output: the password of its user
 * info, and the value of any query parameter named like a secret (`password`, `token`...).
 *
 * Decided by the text's shape, not by a URL parser, since a password pasted unencoded (with
 * `/`, `?`, `#` or `:` in it) is often why the text is not a URL, or why it parses as another
 * host with the password's tail in its path. With one `@`, everything between the user name's
 * `:` and that `@` is the password. With several, which `@` ends the user info cannot be told
 * (a password holding one, or an address in the path): everything after the scheme is hidden.
 */
export function redactUrl(url: string): string {
  const scheme = SCHEME.exec(url)?.[1];
  let text = url;
  if (scheme !== undefined) {
    const ats = url.split('@').length - 1;
    if (ats > 1) return `${scheme}://***`;
    if (ats === 1) text = text.replace(USER_INFO, '$1:***@');
  }
  return text.replace(SECRET_PARAMETER, '$1***');
}

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
/** `scheme://user:<password>@`, the password running to the (only) `@`. */
const USER_INFO = /^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):[^@]*@/i;
/** `?password=…`, `&api_token=…`: a query parameter named like a secret, and its value. */
const SECRET_PARAMETER = /([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&#]*/gi;
