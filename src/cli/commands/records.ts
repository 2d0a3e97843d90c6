import { parseArgs } from 'node:util';
import { hashKey } from '../../idempotency/hash.js';
import type { IdempotencyRecord, IdempotencyStore, RecordStatus } from '../../idempotency/store.js';
import { openStore } from '../../stores/open-store.js';
import type { CliIo } from '../io.js';
import { clip, isoTime, textTable } from '../output.js';
import { runResourceCommand } from '../run-command.js';

const HELP = `Usage: reprocess records <list|show|delete|purge> [options]

Inspects and cleans an idempotency store. Stored results, errors and step results are
never printed unless --show-result is given.

Commands:
  list              records in key order: key, status, token, attempts, lease, expiry, steps
  show <key>        one record
  delete <key>      remove one record (a repeat of the operation then runs again)
  purge             remove expired records

<key> is the stored key (64 hex characters, as list prints it). With --operation, <key> is
the caller's idempotency key instead, hashed the way idempotent() stores it.

Options:
  --store <url>        the store (default key-value: .reprocess/idempotency.sqlite here);
                       also sqlite:path, memory:, postgres://, mysql://, redis://, dynamodb://
  --status <status>    list: only in_progress, completed or failed
  --limit <n>          list: at most n records (default 50); purge: at most n
  --cursor <cursor>    list: continue after a previous page
  --operation <name>   show/delete: hash <key> as the caller's key of this operation
  --principal <name>   with --operation: the principal (tenant) of the key
  --show-result        print stored results, errors and step results
  --json               print JSON
  -h, --help           show this help

Exit codes: 0 ok, 1 failure (no such record, store unavailable), 2 usage error.`;

const STATUSES: readonly RecordStatus[] = ['in_progress', 'completed', 'failed'];

interface Parsed {
  command: 'list' | 'show' | 'delete' | 'purge' | 'help';
  key?: string;
  store: string;
  status?: RecordStatus;
  limit?: number;
  cursor?: string;
  showResult: boolean;
  json: boolean;
}

class UsageError extends Error {}

function parse(args: string[]): Parsed {
  const { values, positionals } = parseArgs({
    args,
    options: {
      store: { type: 'string' },
      status: { type: 'string' },
      limit: { type: 'string' },
      cursor: { type: 'string' },
      operation: { type: 'string' },
      principal: { type: 'string' },
      'show-result': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  const [command, ...rest] = positionals;
  const base = {
    store: values.store ?? 'key-value',
    showResult: values['show-result'] === true,
    json: values.json === true,
  };
  if (values.help) return { command: 'help', ...base };
  if (command === undefined) throw new UsageError('missing command: list, show, delete or purge');
  if (command !== 'list' && command !== 'show' && command !== 'delete' && command !== 'purge') {
    throw new UsageError(`unknown command "${command}": use list, show, delete or purge`);
  }
  if (values.store !== undefined && values.store.trim() === '') {
    throw new UsageError('--store needs a value');
  }
  const parsed: Parsed = { command, ...base };

  const takesKey = command === 'show' || command === 'delete';
  if (takesKey) {
    if (rest.length !== 1 || rest[0] === undefined || rest[0] === '') {
      throw new UsageError(`${command} takes exactly one <key>`);
    }
    parsed.key =
      values.operation === undefined
        ? rest[0]
        : hashKey({ operation: values.operation, principal: values.principal, key: rest[0] });
  } else if (rest.length > 0) {
    throw new UsageError(`${command} takes no argument, got "${rest.join(' ')}"`);
  }
  if (!takesKey && (values.operation !== undefined || values.principal !== undefined)) {
    throw new UsageError('--operation and --principal apply to show and delete');
  }
  if (values.principal !== undefined && values.operation === undefined) {
    throw new UsageError('--principal needs --operation');
  }
  if (values.status !== undefined) {
    if (command !== 'list') throw new UsageError('--status applies to list');
    if (!STATUSES.includes(values.status as RecordStatus)) {
      throw new UsageError(
        `--status must be one of ${STATUSES.join(', ')}; got "${values.status}"`,
      );
    }
    parsed.status = values.status as RecordStatus;
  }
  if (values.cursor !== undefined) {
    if (command !== 'list') throw new UsageError('--cursor applies to list');
    parsed.cursor = values.cursor;
  }
  if (values.limit !== undefined) {
    if (command !== 'list' && command !== 'purge') {
      throw new UsageError('--limit applies to list and purge');
    }
    if (
      !/^\d+$/.test(values.limit) ||
      Number(values.limit) < 1 ||
      Number(values.limit) > MAX_LIMIT
    ) {
      throw new UsageError(
        `--limit must be a whole number from 1 to ${MAX_LIMIT}; got "${values.limit}"`,
      );
    }
    parsed.limit = Number(values.limit);
  }
  return parsed;
}

/** The largest --limit: what every store's LIMIT takes (a 32-bit integer on PostgreSQL). */
const MAX_LIMIT = 2_147_483_647;

/** `reprocess records list|show|delete|purge --store <url>`. */
export function run(args: string[], io: CliIo): Promise<number> {
  return runResourceCommand<Parsed, IdempotencyStore>(
    {
      name: 'records',
      help: HELP,
      parse,
      // Inspecting a store must not create one: a mistyped SQLite path is an error, not an
      // empty new database that "holds no records".
      open: (parsed) => openStore(parsed.store, { mustExist: true }),
      execute,
      close: async (store) => store.close?.(),
    },
    args,
    io,
  );
}

async function execute(parsed: Parsed, store: IdempotencyStore, io: CliIo): Promise<number> {
  const now = Date.now();
  switch (parsed.command) {
    case 'list': {
      const page = await store.list({
        limit: parsed.limit ?? 50,
        ...(parsed.status === undefined ? {} : { status: parsed.status }),
        ...(parsed.cursor === undefined ? {} : { cursor: parsed.cursor }),
      });
      if (parsed.json) {
        const records = page.records.map((r) => toJson(r, parsed.showResult, now));
        io.out(
          JSON.stringify(
            page.cursor === undefined ? { records } : { records, cursor: page.cursor },
            null,
            2,
          ),
        );
        return 0;
      }
      io.out(table(page.records, parsed.showResult, now));
      if (page.cursor !== undefined) io.out(`more: --cursor ${page.cursor}`);
      return 0;
    }
    case 'show': {
      const key = parsed.key as string;
      const record = await store.get(key);
      if (!record) {
        io.err(`reprocess records: no record with key ${key} in ${store.name}`);
        return 1;
      }
      if (parsed.json) io.out(JSON.stringify(toJson(record, parsed.showResult, now), null, 2));
      else io.out(details(record, parsed.showResult, now));
      return 0;
    }
    case 'delete': {
      const key = parsed.key as string;
      const deleted = await store.delete(key);
      if (parsed.json) io.out(JSON.stringify({ key, deleted }));
      else io.out(deleted ? `deleted ${key}` : `no record with key ${key}`);
      return deleted ? 0 : 1;
    }
    case 'purge': {
      const purged = await store.purgeExpired(
        parsed.limit === undefined ? {} : { limit: parsed.limit },
      );
      if (parsed.json) io.out(JSON.stringify({ purged }));
      else io.out(`purged ${purged} expired record${purged === 1 ? '' : 's'}`);
      return 0;
    }
    default:
      return 2;
  }
}

// ------------------------------------------------------------------ output

function leaseText(record: IdempotencyRecord, now: number): string {
  if (record.status !== 'in_progress') return '-';
  if (record.leaseUntil === 0) return 'released';
  return `${record.leaseUntil > now ? 'held until' : 'ended'} ${isoTime(record.leaseUntil)}`;
}

function expiryText(record: IdempotencyRecord, now: number): string {
  return `${isoTime(record.expiresAt)}${record.expiresAt <= now ? ' (expired)' : ''}`;
}

function table(records: IdempotencyRecord[], showResult: boolean, now: number): string {
  if (records.length === 0) return 'no records';
  const head = ['key', 'status', 'token', 'attempts', 'lease', 'expires', 'steps'];
  if (showResult) head.push('result');
  const rows = records.map((r) => {
    const row = [
      r.key,
      r.status,
      String(r.token),
      String(r.attempts),
      leaseText(r, now),
      expiryText(r, now),
      Object.keys(r.steps).join(',') || '-',
    ];
    if (showResult) row.push(clip(r.result ?? r.error ?? '-', 60));
    return row;
  });
  return textTable(head, rows);
}

function details(record: IdempotencyRecord, showResult: boolean, now: number): string {
  const lines = [
    `key          ${record.key}`,
    `status       ${record.status}`,
    `fingerprint  ${record.fingerprint || '(not checked)'}`,
    `token        ${record.token}`,
    `attempts     ${record.attempts}`,
    `lease        ${leaseText(record, now)}`,
    `expires      ${expiryText(record, now)}`,
    `created      ${isoTime(record.createdAt)}`,
    `updated      ${isoTime(record.updatedAt)}`,
  ];
  const steps = Object.entries(record.steps);
  lines.push(`steps        ${steps.length === 0 ? '-' : steps.map(([name]) => name).join(', ')}`);
  if (showResult) {
    for (const [name, value] of steps) lines.push(`  step ${name}: ${value}`);
    if (record.result !== undefined) lines.push(`result       ${record.result}`);
    if (record.error !== undefined) lines.push(`error        ${record.error}`);
  } else if (record.result !== undefined || record.error !== undefined || steps.length > 0) {
    lines.push('(stored results hidden; add --show-result to print them)');
  }
  return lines.join('\n');
}

function toJson(
  record: IdempotencyRecord,
  showResult: boolean,
  now: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    key: record.key,
    status: record.status,
    fingerprint: record.fingerprint,
    token: record.token,
    attempts: record.attempts,
    leaseUntil: record.leaseUntil,
    leaseHeld: record.status === 'in_progress' && record.leaseUntil > now,
    expiresAt: record.expiresAt,
    expired: record.expiresAt <= now,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    steps: Object.keys(record.steps),
  };
  if (showResult) {
    out.stepResults = { ...record.steps };
    if (record.result !== undefined) out.result = record.result;
    if (record.error !== undefined) out.error = record.error;
  }
  return out;
}
