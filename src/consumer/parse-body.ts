import { InvalidArgumentError } from '../errors.js';
import type { Headers } from './types.js';

/**
 * How a body becomes the handler's `message.body`: `json` (the default; UTF-8 JSON),
 * `text` (UTF-8), `bytes` (as delivered), or a function. A function that throws, like
 * invalid JSON or invalid UTF-8, makes the message poison: it is quarantined, never retried.
 */
export type BodyParser =
  | 'json'
  | 'text'
  | 'bytes'
  | ((raw: Uint8Array, headers: Headers) => unknown | Promise<unknown>);

/** A parser made into a function. */
export type ParseBody = (raw: Uint8Array, headers: Headers) => unknown | Promise<unknown>;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Resolves a {@link BodyParser}; throws {@link InvalidArgumentError} for an unknown one. */
export function bodyParser(parser: BodyParser | undefined): ParseBody {
  const chosen = parser ?? 'json';
  if (typeof chosen === 'function') return chosen;
  switch (chosen) {
    case 'json':
      return parseJson;
    case 'text':
      return (raw) => decodeUtf8(raw);
    case 'bytes':
      return (raw) => raw;
    default:
      throw new InvalidArgumentError(
        `parse must be "json", "text", "bytes" or a function (raw, headers) => body; got ${JSON.stringify(chosen)}`,
      );
  }
}

function parseJson(raw: Uint8Array): unknown {
  const text = decodeUtf8(raw);
  try {
    return JSON.parse(text);
  } catch (error) {
    // Checked only on failure: trimming every good body costs a string copy per message.
    if (text.trim() === '') throw new SyntaxError('the body is empty, expected JSON');
    const reason = error instanceof Error ? error.message : String(error);
    throw new SyntaxError(`the body is not valid JSON (${reason})`);
  }
}

function decodeUtf8(raw: Uint8Array): string {
  try {
    return strictUtf8.decode(raw);
  } catch {
    throw new TypeError('the body is not valid UTF-8');
  }
}
