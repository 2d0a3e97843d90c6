import { type SqliteStore, type SqliteStoreOptions, createSqliteStore } from './sqlite-store.js';
import { parseSqliteUrl } from './sqlite-url.js';

export { parseSqliteUrl };

/**
 * Opens a SQLite store from a URL: `sqlite:relative/path.sqlite`, `sqlite:/absolute/path`,
 * `sqlite:///absolute/path`, `sqlite::memory:`. Query parameters: `table`, `busy_timeout_ms`,
 * `synchronous` (`normal` | `full`), `batch` (`true` | `false`: group commit, default true),
 * `replay_cache_bytes` (memory of the replay cache, 0 turns it off; default 8 MiB),
 * `checkpoint` (`background` | `inline`: where WAL checkpoints run, default background).
 *
 * @example
 * const store = openSqliteStore('sqlite:data/idempotency.sqlite?table=payments');
 */
export function openSqliteStore(
  url: string,
  options: Omit<SqliteStoreOptions, 'path' | 'database'> = {},
): SqliteStore {
  return createSqliteStore({ ...parseSqliteUrl(url), ...options });
}
