import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/commands/records.js';
import { hashKey } from '../../src/idempotency/hash.js';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { bufferIo } from '../helpers/cli-io.js';

const FP = 'f'.repeat(64);
const SECRET = 'card-4242-SECRET';
const HOUR = 3_600_000;

let dir: string;
let url: string;
const keys = {
  done: hashKey({ operation: 'charge', key: 'order-1' }),
  running: hashKey({ operation: 'charge', principal: 'tenant-a', key: 'order-2' }),
  failed: hashKey({ operation: 'charge', key: 'order-3' }),
  expired: hashKey({ operation: 'charge', key: 'order-4' }),
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'reprocess-records-cli-'));
  const path = join(dir, 'store.sqlite');
  url = `sqlite:${path}`;
  // Real time: the CLI compares leases and expiry with the wall clock.
  const store = createSqliteStore({ path });
  const done = await store.begin(keys.done, FP, 30_000, HOUR);
  if (done.kind !== 'acquired') throw new Error('setup');
  await store.saveStep(keys.done, done.token, 'charge', `"${SECRET}"`);
  await store.complete(keys.done, done.token, `{"receipt":"${SECRET}"}`, HOUR);
  const running = await store.begin(keys.running, FP, HOUR, HOUR);
  if (running.kind !== 'acquired') throw new Error('setup');
  await store.saveStep(keys.running, running.token, 'reserve', '"r1"');
  const failed = await store.begin(keys.failed, FP, 30_000, HOUR);
  if (failed.kind !== 'acquired') throw new Error('setup');
  await store.fail(keys.failed, failed.token, `{"code":"DECLINED","detail":"${SECRET}"}`, HOUR);
  await store.close();
  // Written an hour ago with a 1 ms ttl (a store on a clock an hour behind): expired for the
  // CLI, which reads the wall clock, without waiting for it.
  const past = createSqliteStore({ path, clock: new FakeClock(Date.now() - HOUR) });
  const expired = await past.begin(keys.expired, FP, 1, 1);
  if (expired.kind !== 'acquired') throw new Error('setup');
  await past.complete(keys.expired, expired.token, '"old"', 1);
  await past.close();
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('reprocess records', () => {
  it('lists key, status, token, attempts, lease, expiry and step names, never results', async () => {
    const io = bufferIo();
    expect(await run(['list', '--store', url], io)).toBe(0);
    const text = io.stdout();
    expect(text).toMatch(/^key\s+status\s+token\s+attempts\s+lease\s+expires\s+steps/);
    for (const key of Object.values(keys)) expect(text).toContain(key);
    const line = (key: string) => text.split('\n').find((l) => l.startsWith(key)) ?? '';
    expect(line(keys.done)).toMatch(/completed\s+\d{16}\s+1\s+-\s+\S+Z\s+charge$/);
    expect(line(keys.running)).toMatch(
      /in_progress\s+\d{16}\s+1\s+held until \S+Z\s+\S+Z\s+reserve$/,
    );
    expect(line(keys.failed)).toContain('failed');
    expect(line(keys.expired)).toContain('(expired)');
    expect(text).not.toContain(SECRET);
    expect(io.stderr()).toBe('');
  });

  it('prints results only with --show-result', async () => {
    const io = bufferIo();
    expect(await run(['list', '--store', url, '--show-result'], io)).toBe(0);
    expect(io.stdout()).toContain(SECRET);
  });

  it('filters by status and pages with a cursor', async () => {
    const io = bufferIo();
    expect(await run(['list', '--store', url, '--status', 'completed', '--json'], io)).toBe(0);
    const completed = JSON.parse(io.stdout()) as {
      records: Array<{ key: string; status: string }>;
    };
    expect(completed.records.map((r) => r.key).sort()).toEqual([keys.done, keys.expired].sort());

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = bufferIo();
      const args = ['list', '--store', url, '--limit', '1', '--json'];
      if (cursor) args.push('--cursor', cursor);
      expect(await run(args, page)).toBe(0);
      const parsed = JSON.parse(page.stdout()) as {
        records: Array<{ key: string }>;
        cursor?: string;
      };
      expect(parsed.records).toHaveLength(1);
      seen.push(...parsed.records.map((r) => r.key));
      cursor = parsed.cursor;
    } while (cursor);
    expect(seen.sort()).toEqual(Object.values(keys).sort());

    const text = bufferIo();
    expect(await run(['list', '--store', url, '--limit', '2'], text)).toBe(0);
    expect(text.stdout()).toMatch(/more: --cursor \S+/);
  });

  it('lists JSON with step names and no results unless asked', async () => {
    const io = bufferIo();
    expect(await run(['list', '--store', url, '--json'], io)).toBe(0);
    const { records } = JSON.parse(io.stdout()) as { records: Array<Record<string, unknown>> };
    const done = records.find((r) => r.key === keys.done);
    expect(done).toMatchObject({
      status: 'completed',
      attempts: 1,
      steps: ['charge'],
      expired: false,
    });
    expect(done).not.toHaveProperty('result');
    expect(done).not.toHaveProperty('stepResults');
    expect(io.stdout()).not.toContain(SECRET);

    const shown = bufferIo();
    expect(await run(['list', '--store', url, '--json', '--show-result'], shown)).toBe(0);
    const withResults = JSON.parse(shown.stdout()) as { records: Array<Record<string, unknown>> };
    expect(withResults.records.find((r) => r.key === keys.done)).toMatchObject({
      result: `{"receipt":"${SECRET}"}`,
      stepResults: { charge: `"${SECRET}"` },
    });
  });

  it('shows one record by its stored key or by the caller key with --operation', async () => {
    const io = bufferIo();
    expect(await run(['show', keys.running, '--store', url], io)).toBe(0);
    expect(io.stdout()).toContain(`key          ${keys.running}`);
    expect(io.stdout()).toMatch(/lease\s+held until/);
    expect(io.stdout()).toMatch(/steps\s+reserve/);

    const byCallerKey = bufferIo();
    const args = ['show', 'order-2', '--operation', 'charge', '--principal', 'tenant-a'];
    expect(await run([...args, '--store', url, '--json'], byCallerKey)).toBe(0);
    expect(JSON.parse(byCallerKey.stdout())).toMatchObject({
      key: keys.running,
      status: 'in_progress',
    });

    const hidden = bufferIo();
    expect(await run(['show', keys.done, '--store', url], hidden)).toBe(0);
    expect(hidden.stdout()).not.toContain(SECRET);
    expect(hidden.stdout()).toContain('--show-result');
    const shown = bufferIo();
    expect(await run(['show', keys.done, '--store', url, '--show-result'], shown)).toBe(0);
    expect(shown.stdout()).toContain(`result       {"receipt":"${SECRET}"}`);
    expect(shown.stdout()).toContain(`step charge: "${SECRET}"`);

    const missing = bufferIo();
    expect(await run(['show', 'f'.repeat(64), '--store', url], missing)).toBe(1);
    expect(missing.stderr()).toContain('no record');
  });

  it('deletes one record and purges expired ones', async () => {
    const io = bufferIo();
    expect(await run(['delete', keys.failed, '--store', url], io)).toBe(0);
    expect(io.stdout()).toBe(`deleted ${keys.failed}`);
    const again = bufferIo();
    expect(await run(['delete', keys.failed, '--store', url, '--json'], again)).toBe(1);
    expect(JSON.parse(again.stdout())).toEqual({ key: keys.failed, deleted: false });

    const purge = bufferIo();
    expect(await run(['purge', '--store', url, '--json'], purge)).toBe(0);
    expect(JSON.parse(purge.stdout())).toEqual({ purged: 1 });

    const store = createSqliteStore({ path: join(dir, 'store.sqlite') });
    expect((await store.list()).records.map((r) => r.key).sort()).toEqual(
      [keys.done, keys.running].sort(),
    );
    await store.close();
  });

  it('answers bad flags and arguments with usage and exit 2', async () => {
    const cases: string[][] = [
      [],
      ['explode'],
      ['list', '--bogus'],
      ['list', '--status', 'done'],
      ['list', '--limit', '0'],
      ['list', '--limit', 'ten'],
      ['list', 'extra'],
      ['show'],
      ['show', 'a', 'b'],
      ['delete', 'k', '--status', 'completed'],
      ['purge', '--cursor', 'x'],
      ['list', '--operation', 'charge'],
      ['show', 'k', '--principal', 'p'],
      ['list', '--store'],
      ['list', '--store', 'ftp://nowhere'],
    ];
    for (const args of cases) {
      const io = bufferIo();
      expect(await run(args, io), args.join(' ')).toBe(2);
      expect(io.stderr(), args.join(' ')).toMatch(/reprocess records: /);
    }
    const help = bufferIo();
    expect(await run(['--help'], help)).toBe(0);
    expect(help.stdout()).toContain('Usage: reprocess records');
  });

  it('never prints a record edited into unreadable steps: the error says so without quoting them', async () => {
    const path = url.slice('sqlite:'.length);
    const raw = new Database(path);
    raw
      .prepare('UPDATE reprocess_idempotency SET steps = ? WHERE key = ?')
      .run(`{"charge": ${SECRET} (hand-edited)}`, keys.done);
    raw.close();
    for (const args of [['list'], ['show', keys.done]]) {
      const io = bufferIo();
      expect(await run([...args, '--store', url], io)).toBe(1);
      expect(io.stderr()).toMatch(/steps that are not valid JSON/);
      // A parser's message would quote the start of the text (it cuts long ones).
      expect(io.stdout() + io.stderr()).not.toContain('card-4242');
    }
  });

  it('reports a store that cannot be opened with exit 1 and a clear message', async () => {
    const io = bufferIo();
    expect(await run(['list', '--store', 'sqlite:/proc/self/nope.sqlite'], io)).toBe(1);
    expect(io.stderr()).toMatch(/no store file at \/proc\/self\/nope\.sqlite/);
    // A file that is not a database: the driver's words once, not twice.
    const notDb = join(dir, 'not-a-database.sqlite');
    writeFileSync(notDb, 'plain text, not SQLite '.repeat(100));
    const garbled = bufferIo();
    expect(await run(['list', '--store', `sqlite:${notDb}`], garbled)).toBe(1);
    expect(garbled.stderr().match(/file is not a database/g)).toHaveLength(1);
  });

  it('never creates a store it was asked to inspect: a mistyped path is exit 1', async () => {
    for (const command of [['list'], ['purge'], ['delete', 'k']]) {
      const io = bufferIo();
      const typo = join(dir, 'data', 'idempotncy.sqlite');
      expect(await run([...command, '--store', `sqlite:${typo}`], io), command[0]).toBe(1);
      expect(io.stderr()).toMatch(/no store file at/);
      expect(existsSync(join(dir, 'data'))).toBe(false);
    }
  });

  it('never creates a table it was asked to inspect: a mistyped table is exit 1 and the file is left as it was', async () => {
    const path = join(dir, 'store.sqlite');
    const tables = () => {
      const db = new Database(path, { readonly: true });
      try {
        return (
          db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .all() as Array<{
            name: string;
          }>
        ).map((row) => row.name);
      } finally {
        db.close();
      }
    };
    const before = tables();
    for (const command of [['list'], ['purge'], ['delete', 'k'], ['show', 'k']]) {
      const io = bufferIo();
      const typo = `sqlite:${path}?table=idempotncy`;
      expect(await run([...command, '--store', typo], io), command[0]).toBe(1);
      expect(io.stderr()).toMatch(/no table "idempotncy" in this file/);
      expect(tables()).toEqual(before);
    }
  });

  it('bounds --limit to what every store takes', async () => {
    const io = bufferIo();
    const path = join(dir, 'store.sqlite');
    expect(await run(['purge', '--store', `sqlite:${path}`, '--limit', '3000000000'], io)).toBe(2);
    expect(io.stderr()).toMatch(/--limit must be a whole number from 1 to 2147483647/);
  });
});
