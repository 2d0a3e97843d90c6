import { InvalidArgumentError } from '../errors.js';
import { redactUrl } from '../redact-url.js';
import { parseSqliteUrl } from '../stores/sqlite/sqlite-url.js';

/**
 * Which store a config selects. `key-value` (the default) is the embedded SQLite file; a URL
 * selects a distributed store. Drivers are not loaded here: the caller opens the store
 * from its subpath (`reprocess/postgres`...), so nobody installs a driver they do not use.
 */
export type StoreSpec =
  | {
      kind: 'sqlite';
      /** Undefined for the embedded default file. */
      path: string | undefined;
      /** The records table, from `?table=`. */
      table?: string;
    }
  | { kind: 'postgres'; url: string }
  | { kind: 'redis'; url: string }
  | { kind: 'mysql'; url: string }
  | {
      kind: 'dynamodb';
      table: string;
      region: string | undefined;
      /** A local endpoint (DynamoDB Local, dynalite), from `?endpoint=`. */
      endpoint: string | undefined;
    };

/** What a `store` value may look like, for error messages. */
export const STORE_FORMS =
  "'key-value' (the embedded SQLite file) or a URL: postgres://…, redis://…, dynamodb://table (a table name of 3 to 255 letters, digits, _ . -), mysql://…, sqlite:path";

const TABLE = /^[A-Za-z0-9_.-]{3,255}$/;

/**
 * Parses a config's `store` value; throws {@link InvalidArgumentError} (listing the accepted
 * forms) for anything else.
 *
 * @example
 * parseStoreSpec('key-value'); // { kind: 'sqlite', path: undefined }
 * parseStoreSpec('dynamodb://idempotency?region=eu-west-1'); // { kind: 'dynamodb', table: 'idempotency', ... }
 */
export function parseStoreSpec(value: string): StoreSpec {
  const spec = tryParseStoreSpec(value);
  if (spec === undefined) {
    throw new InvalidArgumentError(
      `store must be ${STORE_FORMS}; got ${JSON.stringify(redactUrl(value))}`,
    );
  }
  return spec;
}

/** Like {@link parseStoreSpec}, but `undefined` instead of throwing. */
export function tryParseStoreSpec(value: unknown): StoreSpec | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text === 'key-value') return { kind: 'sqlite', path: undefined };
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'sqlite':
      // The store's own rules (percent-decoding, the query parameters it knows), so that
      // a config passes its check only with a URL the store will open.
      try {
        const { path, table } = parseSqliteUrl(text);
        return table === undefined ? { kind: 'sqlite', path } : { kind: 'sqlite', path, table };
      } catch {
        return undefined;
      }
    case 'postgres':
    case 'postgresql':
      return hasHost(text) ? { kind: 'postgres', url: text } : undefined;
    case 'redis':
    case 'rediss':
      return hasHost(text) ? { kind: 'redis', url: text } : undefined;
    case 'mysql':
    case 'mariadb':
      return hasHost(text) ? { kind: 'mysql', url: text } : undefined;
    case 'dynamodb':
      return parseDynamo(text);
    default:
      return undefined;
  }
}

function hasHost(text: string): boolean {
  try {
    return new URL(text).host !== '';
  } catch {
    return false;
  }
}

// Not through URL: it lower-cases the host, and DynamoDB table names are case-sensitive.
function parseDynamo(text: string): StoreSpec | undefined {
  const rest = text.slice('dynamodb://'.length);
  if (!text.toLowerCase().startsWith('dynamodb://')) return undefined;
  const queryAt = rest.indexOf('?');
  const table = (queryAt === -1 ? rest : rest.slice(0, queryAt)).replace(/\/$/, '');
  if (!TABLE.test(table)) return undefined;
  const query = new URLSearchParams(queryAt === -1 ? '' : rest.slice(queryAt + 1));
  return {
    kind: 'dynamodb',
    table,
    region: query.get('region') ?? undefined,
    endpoint: query.get('endpoint') ?? undefined,
  };
}
