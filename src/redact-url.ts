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
  // Only a scheme this library takes is read as one: in `app://s3cret:x@host`, "app:" may be
  // a user name whose unencoded password starts with "//", and "s3cret" no user name at all.
  const found = SCHEME.exec(text)?.[0] ?? '';
  const scheme = KNOWN_SCHEMES.has(found.slice(0, -3).toLowerCase()) ? found : '';
  const userInfo = text.slice(scheme.length, last);
  const colon = userInfo.indexOf(':');
  const user = colon < 0 ? undefined : userInfo.slice(0, colon);
  const kept = user !== undefined && PLAIN_USER.test(user) ? `${user}:` : '';
  return `${scheme}${kept}***${hideQuery(text.slice(last))}`;
}

/**
 * Query values named like a secret, or holding an encoded "@", hidden (`?password=***`,
 * `&endpoint=***`), in time linear in the text. It gives what two global regular expressions
 * would, one for a parameter whose name (from "?" or "&" up to "=", without "&" or "#")
 * holds pass, secret or token, one for a value (up to the next "&") holding "%40"; as
 * expressions they took cubic time on a text of many "?" (20 s for 10,000 "?pass").
 */
function hideQuery(text: string): string {
  const named = hideValues(
    text,
    (name) => name.secretWord,
    () => true,
  );
  return hideValues(
    named,
    () => true,
    (value) => value.encodedAt,
  );
}

/** Where each parameter that could start at a position ends its name and its value. */
interface Marks {
  /** The first index at or after i holding "=", "&" or "#" (the text's length if none). */
  stop: Int32Array;
  /** The first index at or after i holding "&". */
  amp: Int32Array;
  /** The smallest end of a secret word (pass, secret, token) starting at or after i (n + 1: none). */
  wordEnd: Int32Array;
  /** The first index at or after i where "%40" starts. */
  at40: Int32Array;
}

function marksOf(text: string): Marks {
  const n = text.length;
  const stop = new Int32Array(n + 1).fill(n);
  const amp = new Int32Array(n + 1).fill(n);
  const wordEnd = new Int32Array(n + 1).fill(n + 1);
  const at40 = new Int32Array(n + 1).fill(n);
  for (let i = n - 1; i >= 0; i--) {
    const c = text.charCodeAt(i);
    stop[i] = c === 0x3d || c === 0x26 || c === 0x23 ? i : (stop[i + 1] as number);
    amp[i] = c === 0x26 ? i : (amp[i + 1] as number);
    SECRET_WORD.lastIndex = i;
    const word = SECRET_WORD.exec(text);
    const end = word === null ? n + 1 : i + word[0].length;
    wordEnd[i] = Math.min(end, wordEnd[i + 1] as number);
    at40[i] = text.startsWith('%40', i) ? i : (at40[i + 1] as number);
  }
  return { stop, amp, wordEnd, at40 };
}

/**
 * `text` with the value of each `?name=value` or `&name=value` parameter hidden (`***`) when
 * `byName` and `byValue` both say so; scanned as a global regular expression would: a value
 * runs to the next "&", and a parameter not hidden lets the scan go on from its next character.
 */
function hideValues(
  text: string,
  byName: (name: { secretWord: boolean }) => boolean,
  byValue: (value: { encodedAt: boolean }) => boolean,
): string {
  const n = text.length;
  const { stop, amp, wordEnd, at40 } = marksOf(text);
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c !== 0x3f && c !== 0x26) {
      i++;
      continue;
    }
    const equals = stop[i + 1] as number;
    if (equals < n && text.charCodeAt(equals) === 0x3d) {
      const end = amp[equals + 1] as number;
      const name = { secretWord: (wordEnd[i + 1] as number) <= equals };
      const value = { encodedAt: (at40[equals + 1] as number) + 3 <= end };
      if (byName(name) && byValue(value)) {
        out += `${text.slice(copied, equals + 1)}***`;
        copied = end;
        i = end;
        continue;
      }
    }
    i++;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: leading control characters are the point
const LEADING_SPACE = /^[\u0000-\u0020\u00a0\ufeff]+/;
const NO_CREDENTIALS = /^(?:sqlite:|memory:?$|key-value$)/i;
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
/** The URL schemes of the stores and brokers (and endpoints) this library opens. */
const KNOWN_SCHEMES: ReadonlySet<string> = new Set([
  ...['postgres', 'postgresql', 'mysql', 'mariadb', 'redis', 'rediss', 'amqp', 'amqps'],
  ...['nats', 'tls', 'ws', 'wss', 'dynamodb', 'http', 'https'],
]);
/** A user name: nothing a parser would end it at, and no "@". */
const PLAIN_USER = /^[^/?#@]*$/;
/** Part of a parameter's name that makes it a secret (`password`, `api_token`...), at one place. */
const SECRET_WORD = /pass|secret|token/iy;
