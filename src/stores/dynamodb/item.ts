import { randomBytes } from 'node:crypto';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { RecordCorruptError } from '../../errors.js';
import type { IdempotencyRecord, RecordStatus } from '../../idempotency/store.js';
import { setStep } from '../../idempotency/set-step.js';

/**
 * How a record is laid out as a DynamoDB item. Readable attribute names, so the console and
 * `aws dynamodb get-item` show what they are; every expression refers to them through
 * `#placeholders` (several, such as `status`, `token` and `ttl`, are reserved words).
 *
 * | attribute | type | |
 * | --- | --- | --- |
 * | `pk` | S | the record key (partition key) |
 * | `fingerprint`, `status`, `result`, `error` | S | as in {@link IdempotencyRecord} |
 * | `token`, `attempts`, `leaseUntil`, `expiresAt`, `createdAt`, `updatedAt` | N | times in epoch ms (client clock) |
 * | `ttl` | N | `expiresAt` in epoch SECONDS, for DynamoDB's native TTL |
 * | `steps` | M | `s:<name>` to S (the prefix lets a step be named `''`) |
 * | `claim` | S | a random id of the `begin` call that acquired the record (absent on older items) |
 * | `write` | S | a random id of the last fenced write (complete, fail, release, heartbeat, step) |
 *
 * A deleted record leaves a tombstone (`status = deleted`, only `pk`, `token`, `expiresAt = 0`,
 * `ttl`, `updatedAt`), so the next token stays above the deleted one even on a clock that has not
 * moved; reads treat it as no record.
 */
export type Item = Record<string, AttributeValue>;

/** The status of a tombstone (a deleted record that keeps its token). */
export const DELETED = 'deleted';
/** Prefix of every key of the `steps` map (DynamoDB map keys cannot be empty; step names can). */
export const STEP_PREFIX = 's:';

/** DynamoDB's item size limit: 400 KB, counted as 400 * 1024 bytes. */
export const MAX_ITEM_BYTES = 400 * 1024;

/** A stored item: a live record or the tombstone of a deleted one. */
export type Stored =
  | {
      deleted: false;
      record: IdempotencyRecord;
      claim: string | undefined;
      write: string | undefined;
    }
  | { deleted: true; token: number; expiresAt: 0 };

const STATUSES: ReadonlySet<string> = new Set<RecordStatus>(['in_progress', 'completed', 'failed']);

/** Reads an item; throws {@link RecordCorruptError} naming what is wrong. */
export function fromItem(table: string, item: Item): Stored {
  const key = item.pk?.S;
  if (key === undefined) throw corrupt(table, '(no key)', 'the pk attribute is missing');
  const status = item.status?.S;
  if (status === DELETED) {
    return { deleted: true, token: number(table, key, item, 'token'), expiresAt: 0 };
  }
  if (status === undefined || !STATUSES.has(status)) {
    throw corrupt(table, key, `status is ${JSON.stringify(status)}`);
  }
  const fingerprint = item.fingerprint?.S;
  if (fingerprint === undefined) throw corrupt(table, key, 'the fingerprint is missing');
  const stepsMap = item.steps?.M;
  if (stepsMap === undefined) throw corrupt(table, key, 'steps is not a map');
  const steps: Record<string, string> = {};
  for (const [name, value] of Object.entries(stepsMap)) {
    if (!name.startsWith(STEP_PREFIX) || value.S === undefined) {
      throw corrupt(table, key, `step ${JSON.stringify(name)} is not a prefixed string`);
    }
    setStep(steps, name.slice(STEP_PREFIX.length), value.S);
  }
  const record: IdempotencyRecord = {
    key,
    fingerprint,
    status: status as RecordStatus,
    token: number(table, key, item, 'token'),
    attempts: number(table, key, item, 'attempts'),
    leaseUntil: number(table, key, item, 'leaseUntil'),
    expiresAt: number(table, key, item, 'expiresAt'),
    steps,
    createdAt: number(table, key, item, 'createdAt'),
    updatedAt: number(table, key, item, 'updatedAt'),
  };
  if (item.result !== undefined) record.result = text(table, key, item, 'result');
  if (item.error !== undefined) record.error = text(table, key, item, 'error');
  return { deleted: false, record, claim: item.claim?.S, write: item.write?.S };
}

/** The item of a newly acquired record. */
export function newItem(
  key: string,
  fingerprint: string,
  token: number,
  now: number,
  leaseUntil: number,
  expiresAt: number,
  claim: string,
): Item {
  return {
    pk: { S: key },
    fingerprint: { S: fingerprint },
    status: { S: 'in_progress' },
    token: n(token),
    attempts: n(1),
    leaseUntil: n(leaseUntil),
    expiresAt: n(expiresAt),
    ttl: n(ttlSeconds(expiresAt)),
    steps: { M: {} },
    createdAt: n(now),
    updatedAt: n(now),
    claim: { S: claim },
  };
}

/** Bytes of a claim id: 16 random bytes, as 22 characters of base64url. */
const CLAIM_BYTES = 16;

/** A new claim id, one per `begin` call (see the `claim` attribute). */
export function newClaim(): string {
  return randomBytes(CLAIM_BYTES).toString('base64url');
}

/** A number attribute. */
export function n(value: number): AttributeValue {
  return { N: String(value) };
}

/** Native TTL is in whole seconds; round up so DynamoDB never removes a record early. */
export function ttlSeconds(expiresAtMs: number): number {
  return Math.ceil(expiresAtMs / 1000);
}

/** UTF-8 size of a string, as DynamoDB counts it. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * The size DynamoDB counts for the attributes of a new in-progress item with `key` and
 * `fingerprint` (names plus values; numbers at their 21-byte worst case).
 */
export function baseItemBytes(key: string, fingerprint: string): number {
  const names =
    'pkfingerprintstatustokenattemptsleaseUntilexpiresAtttlstepscreatedAtupdatedAtclaimwrite';
  // The claim id and the last write's id.
  const claim = 2 * Math.ceil((CLAIM_BYTES * 4) / 3);
  return (
    names.length +
    utf8Bytes(key) +
    utf8Bytes(fingerprint) +
    'in_progress'.length +
    7 * 21 +
    3 +
    claim
  );
}

function number(table: string, key: string, item: Item, name: string): number {
  const raw = item[name]?.N;
  const value = raw !== undefined && /^-?\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw corrupt(table, key, `${name} is ${JSON.stringify(raw ?? item[name])}`);
  }
  return value;
}

function text(table: string, key: string, item: Item, name: string): string {
  const value = item[name]?.S;
  if (value === undefined) throw corrupt(table, key, `${name} is not a string`);
  return value;
}

function corrupt(table: string, key: string, why: string): RecordCorruptError {
  return new RecordCorruptError(
    `dynamodb store: record ${JSON.stringify(key)} in table ${table} is unreadable: ${why}`,
  );
}
