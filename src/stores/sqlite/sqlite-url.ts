import { InvalidArgumentError } from '../../errors.js';
import type { SqliteStoreOptions } from './sqlite-store.js';

/*
 * The `sqlite:` URL, without the driver: the config loader checks a `store: sqlite:...` with
 * the same rules as the store that will open it, and must not load better-sqlite3 to do so.
 */

/** The options a `sqlite:` URL stands for; throws InvalidArgumentError naming the problem. */
export function parseSqliteUrl(url: string): SqliteStoreOptions & { path: string } {
  if (typeof url !== 'string' || !url.startsWith('sqlite:')) {
    throw new InvalidArgumentError(
      `a sqlite store URL starts with "sqlite:" (sqlite:path/to/file.sqlite, sqlite::memory:); got ${JSON.stringify(url)}`,
    );
  }
  let rest = url.slice('sqlite:'.length);
  let query = '';
  const mark = rest.indexOf('?');
  if (mark >= 0) {
    query = rest.slice(mark + 1);
    rest = rest.slice(0, mark);
  }
  // sqlite://host/path is not a thing: sqlite:///abs and sqlite://rel both mean a path.
  if (rest.startsWith('//')) rest = rest.slice(2);
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    // A bare % (data/100%.sqlite) is not URL text: say so, naming the URL.
    throw new InvalidArgumentError(
      `sqlite store URL ${JSON.stringify(url)} has a % that does not start an escape (write %25 for a % in the path)`,
    );
  }
  if (path === '') {
    throw new InvalidArgumentError(
      `sqlite store URL ${JSON.stringify(url)} has no file path; use sqlite:path/to/file.sqlite or sqlite::memory:`,
    );
  }
  const options: SqliteStoreOptions & { path: string } = { path };
  for (const [name, value] of new URLSearchParams(query)) {
    if (name === 'table') options.table = value;
    else if (name === 'busy_timeout_ms') options.busyTimeoutMs = wholeNumber(value, name, url);
    else if (name === 'synchronous') {
      if (value !== 'normal' && value !== 'full') {
        throw new InvalidArgumentError(
          `sqlite store URL ${JSON.stringify(url)}: synchronous must be normal or full; got ${JSON.stringify(value)}`,
        );
      }
      options.synchronous = value;
    } else if (name === 'batch') {
      if (value !== 'true' && value !== 'false') {
        throw new InvalidArgumentError(
          `sqlite store URL ${JSON.stringify(url)}: batch must be true or false; got ${JSON.stringify(value)}`,
        );
      }
      options.batch = value === 'true';
    } else if (name === 'checkpoint') {
      if (value !== 'background' && value !== 'inline') {
        throw new InvalidArgumentError(
          `sqlite store URL ${JSON.stringify(url)}: checkpoint must be background or inline; got ${JSON.stringify(value)}`,
        );
      }
      options.checkpoint = value;
    } else if (name === 'replay_cache_bytes') {
      options.replayCache = { maxBytes: wholeNumber(value, name, url) };
    } else {
      throw new InvalidArgumentError(
        `sqlite store URL ${JSON.stringify(url)}: unknown parameter "${name}" (accepted: table, busy_timeout_ms, synchronous, batch, replay_cache_bytes, checkpoint)`,
      );
    }
  }
  return options;
}

function wholeNumber(value: string, name: string, url: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(
      `sqlite store URL ${JSON.stringify(url)}: ${name} must be a whole number; got ${JSON.stringify(value)}`,
    );
  }
  return n;
}
