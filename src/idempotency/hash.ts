import * as crypto from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import { quoteJson } from './json-text.js';

/** What {@link hashKey} hashes: the operation, the optional principal and the caller's key. */
export interface KeyParts {
  operation: string;
  principal?: string | undefined;
  key: string;
}

type OneShotHash = (algorithm: string, data: string, encoding: 'hex') => string;

// `crypto.hash` (Node >= 20.12) is about twice as fast as createHash for one short input;
// this runs twice per operation, so it shows in throughput.
const oneShot = (crypto as { hash?: OneShotHash }).hash;

/** SHA-256 of `text` (UTF-8) as 64 lowercase hex characters. */
export const sha256Hex: (text: string) => string =
  oneShot === undefined
    ? (text) => crypto.createHash('sha256').update(text, 'utf8').digest('hex')
    : (text) => oneShot('sha256', text, 'hex');

/**
 * The stored key of an operation: SHA-256 (hex) of `(operation, principal, key)`. Fixed
 * length and free of personal data. The parts are framed as a JSON array, so no choice of
 * characters can make two different triples collide (`('a|b', 'c')` and `('a', 'b|c')` give
 * different text), and "no principal" differs from every principal, even an empty one.
 */
export function hashKey(parts: KeyParts): string {
  return sha256Hex(`${scopeFrame(parts.operation, parts.principal)}${quoteJson(parts.key)}]`);
}

/**
 * {@link hashKey} for one fixed scope: the framing of the operation and principal is
 * written once, and each call only escapes the key (no array, no generic serializer on
 * every operation).
 */
export function scopedKeyHasher(
  operation: string,
  principal: string | undefined,
): (key: string) => string {
  const frame = scopeFrame(operation, principal);
  return (key) => sha256Hex(`${frame}${quoteJson(key)}]`);
}

/**
 * The start of the text {@link hashKey} hashes, up to the key. With the key and `]` added,
 * it is exactly `JSON.stringify(['reprocess/key/v1', operation, principal ?? null, key])`:
 * `JSON.stringify` of a string is the same inside an array as alone.
 */
function scopeFrame(operation: string, principal: string | undefined): string {
  const who = principal === undefined ? 'null' : JSON.stringify(principal);
  return `["reprocess/key/v1",${JSON.stringify(operation)},${who},`;
}

/**
 * The fingerprint of the selected input: SHA-256 (hex) of its canonical JSON (keys sorted),
 * so `{a: 1, b: 2}` and `{b: 2, a: 1}` match. Throws `InvalidArgumentError` on a circular input.
 */
export function fingerprintOf(selected: unknown): string {
  return sha256Hex(canonicalJson(selected));
}

/**
 * A stable key derived from an operation's stored key and a name, for a downstream API that
 * takes its own idempotency key (a payment provider). The same operation and name always
 * give the same 64 hex characters; different names or operations give different ones.
 */
export function deriveKey(operationKey: string, name: string): string {
  return sha256Hex(JSON.stringify(['reprocess/derived/v1', operationKey, name]));
}
