/**
 * `url` with its secrets hidden, for messages, reports and output: the password of its user
 * info, and the value of any query parameter named like a secret (`password`, `token`...).
 * Text that is not a URL (a typo, a port out of range, a password pasted unencoded) is
 * redacted all the same, by its shape, so that an error about a malformed URL never repeats
 * its password.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    // "user:pa@ss/word@host" parses, as host "ss" and a path holding the rest of the
    // password: an "@" past the user info means the text is redacted by its shape instead.
    if (u.username !== '' && `${u.pathname}${u.search}${u.hash}`.includes('@')) {
      return redactByShape(url);
    }
    if (u.password !== '') u.password = '***';
    for (const name of [...u.searchParams.keys()]) {
      if (SECRET_NAME.test(name)) u.searchParams.set(name, '***');
    }
    return u.toString();
  } catch {
    return redactByShape(url);
  }
}

/**
 * The password runs to the last "@": pasted unencoded it may hold "/", "?", "#" or "@", which
 * is often why the text is not a URL.
 */
function redactByShape(text: string): string {
  return text
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):.*@/i, '$1:***@')
    .replace(/([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&#]*/gi, '$1***');
}

const SECRET_NAME = /pass|secret|token/i;
