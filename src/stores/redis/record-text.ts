import { RecordCorruptError } from '../../errors.js';
import type { IdempotencyRecord, RecordStatus } from '../../idempotency/store.js';
import { setStep } from '../../idempotency/set-step.js';

/*
 * The text forms of the Redis store (see scripts.ts for the layout):
 *
 *   record string   "<status> <token> <attempts> <leaseUntil> <expiresAt> <createdAt> <updatedAt> <hasSteps>\n<fingerprint>\n<payload>"
 *   existing reply  "e<JSON [stepName, result, ...]>\n<record string>", or the record string
 *                   alone for a record without steps (begin)
 *
 * Two escapes keep the framing unambiguous whatever the caller's strings are: the fingerprint
 * line has no newline (`%` -> %25, newline -> %0A), and the key inside the hash tag has no `}`
 * (`%` -> %25, `}` -> %7D), so the tag always ends where the store put its brace and is never
 * empty. Both are the identity on the core's hex keys and fingerprints.
 */

const STATUSES: ReadonlySet<string> = new Set<RecordStatus>(['in_progress', 'completed', 'failed']);
const HEADER = /^([a-z_]+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) ([01])$/;

/** The fingerprint as stored on its own line. */
export function escapeFingerprint(fingerprint: string): string {
  return /[%\n]/.test(fingerprint)
    ? fingerprint.replace(/[%\n]/g, (c) => (c === '%' ? '%25' : '%0A'))
    : fingerprint;
}

function unescapeFingerprint(stored: string): string {
  return stored.includes('%')
    ? stored.replace(/%(25|0A)/g, (m) => (m === '%25' ? '%' : '\n'))
    : stored;
}

/** The key as written inside the hash tag braces. */
export function escapeTag(key: string): string {
  return /[%}]/.test(key) ? key.replace(/[%}]/g, (c) => (c === '%' ? '%25' : '%7D')) : key;
}

/** Inverse of {@link escapeTag}. */
export function unescapeTag(tag: string): string {
  return tag.includes('%') ? tag.replace(/%(25|7D)/g, (m) => (m === '%25' ? '%' : '}')) : tag;
}

/** Reads an `e…` reply (begin on an existing record, or get). */
export function recordFromReply(key: string, reply: string): IdempotencyRecord {
  const split = reply.indexOf('\n');
  if (reply[0] !== 'e' || split < 0) throw corrupt(key, 'the reply is not a record');
  const steps = stepsFromList(key, parseJson(key, reply.slice(1, split)));
  return recordFromText(key, reply.slice(split + 1), steps);
}

/** Reads a record string (`steps` given apart: the string does not hold them). */
export function recordFromText(
  key: string,
  text: string,
  steps: Record<string, string>,
): IdempotencyRecord {
  const endHeader = text.indexOf('\n');
  const endFingerprint = endHeader < 0 ? -1 : text.indexOf('\n', endHeader + 1);
  const header = endFingerprint < 0 ? null : HEADER.exec(text.slice(0, endHeader));
  if (!header) throw corrupt(key, 'the header line is unreadable');
  const [, status, token, attempts, leaseUntil, expiresAt, createdAt, updatedAt] = header;
  if (!STATUSES.has(status as string)) throw corrupt(key, `status is ${JSON.stringify(status)}`);
  const record: IdempotencyRecord = {
    key,
    fingerprint: unescapeFingerprint(text.slice(endHeader + 1, endFingerprint)),
    status: status as RecordStatus,
    token: digits(key, 'token', token),
    attempts: digits(key, 'attempts', attempts),
    leaseUntil: digits(key, 'leaseUntil', leaseUntil),
    expiresAt: digits(key, 'expiresAt', expiresAt),
    steps,
    createdAt: digits(key, 'createdAt', createdAt),
    updatedAt: digits(key, 'updatedAt', updatedAt),
  };
  if (status === 'completed') record.result = text.slice(endFingerprint + 1);
  else if (status === 'failed') record.error = text.slice(endFingerprint + 1);
  return record;
}

/**
 * Header of a record a plain GET may answer a begin with: finished, without steps (fields 1 and
 * 5 are the status and expiresAt).
 */
const FINISHED = /^(completed|failed) \d+ \d+ \d+ (\d+) \d+ \d+ 0\n/;

/**
 * The record string read by GET, when it is a finished record without steps that is alive at
 * least until `aliveAt` (epoch ms on the server's clock): what begin's script would return for
 * it. Otherwise (no such header, in progress, steps, expiring sooner) undefined: the script
 * decides.
 */
export function finishedAndAlive(
  key: string,
  text: string,
  aliveAt: number,
): IdempotencyRecord | undefined {
  const header = FINISHED.exec(text);
  if (header === null || !(Number(header[2]) > aliveAt)) return undefined;
  return recordFromText(key, text, {});
}

/** Steps from the JSON list `[name, result, ...]` a script encoded. */
export function stepsFromList(key: string, flat: unknown): Record<string, string> {
  if (!Array.isArray(flat) || flat.length % 2 !== 0) {
    throw corrupt(key, 'the steps are not a name/result list');
  }
  const steps: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name: unknown = flat[i];
    const value: unknown = flat[i + 1];
    if (typeof name !== 'string' || typeof value !== 'string') {
      throw corrupt(key, 'a step name or result is not a string');
    }
    setStep(steps, name, value);
  }
  return steps;
}

/** The JSON a script encoded with cjson. */
export function parseJson(key: string, text: string): unknown {
  if (text === '[]') return [];
  try {
    return JSON.parse(text);
  } catch (error) {
    throw corrupt(key, "the script's JSON does not parse", error);
  }
}

/** A field the header pattern already read as decimal digits: only its size is checked. */
function digits(key: string, what: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw corrupt(key, `${what} is ${JSON.stringify(value)}`);
  return n;
}

/** A decimal integer written by a script. */
export function parseInteger(key: string, what: string, value: unknown): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw corrupt(key, `${what} is ${JSON.stringify(value)}`);
  return n;
}

function corrupt(key: string, why: string, cause?: unknown): RecordCorruptError {
  return new RecordCorruptError(
    `redis store: record ${JSON.stringify(key)} is unreadable: ${why}`,
    cause,
  );
}
