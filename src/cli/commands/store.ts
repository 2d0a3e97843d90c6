import { parseArgs } from 'node:util';
import { isReprocessError } from '../../errors.js';
import type { IdempotencyStore } from '../../idempotency/store.js';
import { STORE_URL_FORMS, openStore } from '../../stores/open-store.js';
import type { CliIo } from '../io.js';

const HELP = `Usage: reprocess store init <url>

Prepares an idempotency store for use: creates (or upgrades) its table and schema version
(PostgreSQL, MySQL/MariaDB, SQLite) or its table (DynamoDB). Safe to run again: a store that
is already current is left as it is. Stores that need nothing (Redis, memory:) say so.

Arguments:
  <url>        the store: ${STORE_URL_FORMS.join('\n               ')}
               PostgreSQL takes ?schema=<name>&table=<name>; MySQL ?table=<name>

Options:
  --store <url>  the same as <url>
  -h, --help     show this help

Exit codes: 0 ok, 1 failure (store unreachable, no permission...), 2 usage error.`;

class UsageError extends Error {}

/** A key no operation has (not a SHA-256 of anything known), read to reach the server. */
const PROBE_KEY = '0'.repeat(64);

/** A store that may have a schema helper: createSchema (SQL stores) or createTable (DynamoDB). */
type Preparable = IdempotencyStore & {
  createSchema?: () => Promise<unknown>;
  createTable?: () => Promise<unknown>;
  table?: unknown;
};

function parse(args: string[]): { help: true } | { help: false; url: string } {
  let values: { store?: string | undefined; help?: boolean | undefined };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: { store: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return { help: true };
  const [command, ...rest] = positionals;
  if (command === undefined) throw new UsageError('missing a command (init)');
  if (command !== 'init') throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  const urls = [...rest, ...(values.store === undefined ? [] : [values.store])];
  if (urls.length === 0) throw new UsageError('init needs the store URL');
  if (urls.length > 1) throw new UsageError(`init takes one store URL, got ${urls.length}`);
  return { help: false, url: urls[0] as string };
}

/** What a schema helper's answer says, in one line. */
function describeResult(store: Preparable, result: unknown): string {
  const where = typeof store.table === 'string' ? ` ${store.table}` : '';
  if (typeof result === 'object' && result !== null && 'version' in result) {
    const { version, applied } = result as { version: unknown; applied?: unknown };
    const table = 'table' in result ? ` ${String((result as { table: unknown }).table)}` : where;
    if (Array.isArray(applied) && applied.length > 0) {
      return `${store.name}: created${table} at schema version ${String(version)} (applied ${applied.join(', ')})`;
    }
    return `${store.name}:${table} is already at schema version ${String(version)}; nothing to do`;
  }
  return `${store.name}:${where} ready`;
}

/** `reprocess store init <url>`: creates the table (and schema version) a store needs. */
export async function run(args: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.err(`reprocess store: ${error.message}\n\n${HELP}`);
    return 2;
  }
  if (parsed.help) {
    io.out(HELP);
    return 0;
  }

  let store: Preparable;
  try {
    store = (await openStore(parsed.url)) as Preparable;
  } catch (error) {
    // A URL no store accepts is a usage error; a store that cannot be reached is a failure.
    const usage = isReprocessError(error, 'INVALID_ARGUMENT');
    io.err(`reprocess store: ${error instanceof Error ? error.message : String(error)}`);
    return usage ? 2 : 1;
  }
  try {
    if (typeof store.createSchema === 'function') {
      io.out(describeResult(store, await store.createSchema()));
    } else if (typeof store.createTable === 'function') {
      io.out(describeResult(store, await store.createTable()));
    } else {
      // Still one round trip: as a deploy step, init must fail when the store is unreachable.
      await store.get(PROBE_KEY);
      io.out(`${store.name}: reachable; this store needs no schema; nothing to do`);
    }
    return 0;
  } catch (error) {
    io.err(
      `reprocess store: init failed: ${error instanceof Error ? error.message : String(error)}`,
    );
    return 1;
  } finally {
    await store.close?.();
  }
}
