import { InvalidArgumentError } from '../errors.js';
import type { Headers } from './types.js';

/** What a key source sees of a message. `body` is undefined when the body could not be parsed. */
export interface MessageKeyInput<B = unknown> {
  id: string;
  headers: Headers;
  body: B | undefined;
  raw: Uint8Array;
}

/**
 * Where a message's idempotency key comes from: a function, or a path:
 * - `id`: the broker message id;
 * - `headers.<name>`: a header (exact name first, then case-insensitive);
 * - `body.<field>[.<field>...]`: a field of the parsed body (strings, and numbers as text).
 *
 * The default is {@link DEFAULT_MESSAGE_KEY}: the `idempotency-key` header, else the message id.
 */
export type MessageKeySource<B = unknown> =
  | string
  | ((message: MessageKeyInput<B>) => string | undefined);

/** The default key source: the `idempotency-key` header, falling back to the message id. */
export const DEFAULT_MESSAGE_KEY = 'headers.idempotency-key|id';

/** A key source made into a function; returns undefined when the message has no key there. */
export type KeyReader<B> = (message: MessageKeyInput<B>) => unknown;

/**
 * Turns a {@link MessageKeySource} into a reader, or throws {@link InvalidArgumentError} for a
 * path that names nothing a message has. Paths may be chained with `|` (first found wins).
 */
export function keyReader<B>(source: MessageKeySource<B> | undefined): KeyReader<B> {
  const chosen = source ?? DEFAULT_MESSAGE_KEY;
  if (typeof chosen === 'function') return chosen;
  if (typeof chosen !== 'string') {
    throw new InvalidArgumentError(
      `key must be a path such as "headers.idempotency-key" or "body.orderId", or a function; got ${typeof chosen}`,
    );
  }
  const readers = chosen.split('|').map((path) => pathReader<B>(path.trim()));
  if (readers.length === 1) return readers[0] as KeyReader<B>;
  return (message) => {
    for (const read of readers) {
      const value = read(message);
      if (value !== undefined && value !== null && value !== '') return value;
    }
    return undefined;
  };
}

/** A short description of a key source, for messages ("header idempotency-key or the message id"). */
export function describeKeySource(source: MessageKeySource<never> | undefined): string {
  const chosen = source ?? DEFAULT_MESSAGE_KEY;
  if (typeof chosen === 'function') return 'the key function';
  return chosen
    .split('|')
    .map((p) => p.trim())
    .join(' or ');
}

function pathReader<B>(path: string): KeyReader<B> {
  if (path === 'id') return (m) => m.id;
  if (path.startsWith('headers.') && path.length > 'headers.'.length) {
    const name = path.slice('headers.'.length);
    const lower = name.toLowerCase();
    return (m) => {
      const exact = m.headers[name];
      if (exact !== undefined) return exact;
      for (const [k, v] of Object.entries(m.headers)) if (k.toLowerCase() === lower) return v;
      return undefined;
    };
  }
  if (path.startsWith('body.')) {
    const segments = path.slice('body.'.length).split('.');
    if (segments.every((s) => s.length > 0)) {
      return (m) => {
        let current: unknown = m.body;
        for (const segment of segments) {
          if (typeof current !== 'object' || current === null) return undefined;
          current = (current as Record<string, unknown>)[segment];
        }
        return typeof current === 'number' && Number.isFinite(current) ? String(current) : current;
      };
    }
  }
  throw new InvalidArgumentError(
    `key path ${JSON.stringify(path)} names nothing a message has: use "id", "headers.<name>" or "body.<field>" (several joined with "|"), or a function`,
  );
}
