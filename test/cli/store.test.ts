import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/commands/store.js';
import type { CliIo } from '../../src/cli/io.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

/*
 * `reprocess store init <url>` against the real servers: it creates the table, its purge
 * index and the schema version, says what it did, does nothing the second time, and exits 2
 * on usage errors and 1 when the store cannot be reached.
 */

function capture(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t) };
}

describe('reprocess store: usage', () => {
  it('prints its help with --help and exits 0', async () => {
    const io = capture();
    expect(await run(['--help'], io)).toBe(0);
    expect(io.stdout.join('\n')).toContain('Usage: reprocess store init <url>');
  });

  it.each([
    [[], 'missing a command'],
    [['init'], 'needs the store URL'],
    [['frobnicate', 'postgres://x'], 'unknown command "frobnicate"'],
    [['init', 'postgres://a', 'postgres://b'], 'one store URL'],
    [['init', '--nope', 'postgres://a'], "Unknown option '--nope'"],
    [['init', 'ftp://example.com/x'], 'unknown store'],
  ])('exits 2 on %j', async (args, message) => {
    const io = capture();
    expect(await run(args, io)).toBe(2);
    expect(io.stderr.join('\n')).toContain(message);
    expect(io.stdout).toEqual([]);
  });

  it('never repeats the password of a URL it cannot use', async () => {
    for (const url of [
      'postgres://app:hunter2@127.0.0.1:99999/db',
      'postgress://app:hunter2@127.0.0.1/db',
      'mysql://root:hunter2@127.0.0.1:70000/test',
      'redis://:hunter2@127.0.0.1:99999',
    ]) {
      const io = capture();
      expect(await run(['init', url], io), url).toBe(2);
      expect(io.stderr.join('\n'), url).not.toContain('hunter2');
    }
  });

  it('says a store without a schema needs nothing', async () => {
    const io = capture();
    expect(await run(['init', 'memory:'], io)).toBe(0);
    expect(io.stdout.join('\n')).toBe(
      'memory: reachable; this store needs no schema; nothing to do',
    );
  });

  it('fails (exit 1) when a store without a schema cannot be reached: init is a deploy step', async () => {
    const io = capture();
    expect(await run(['init', 'redis://127.0.0.1:1'], io)).toBe(1);
    expect(io.stdout).toEqual([]);
    expect(io.stderr.join('\n')).toMatch(/reprocess store: init failed: redis store/);
  });
});

const schema = `${RUN_ID}_cli`;

await describeWithService('postgres', 'reprocess store init on PostgreSQL', () => {
  let admin: pg.Pool;
  beforeAll(() => {
    admin = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 1 });
  });
  afterAll(async () => {
    await admin?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin?.end();
  });

  it('creates the table, index and schema version once, then leaves them', async () => {
    const url = `${SERVICES.postgres.url}?schema=${schema}&table=records`;
    const first = capture();
    expect(await run(['init', url], first)).toBe(0);
    expect(first.stdout).toEqual([
      `postgres: created "${schema}"."records" at schema version 1 (applied 1)`,
    ]);

    const { rows } = await admin.query(
      `SELECT to_regclass($1) IS NOT NULL AS records, to_regclass($2) IS NOT NULL AS idx,
              (SELECT array_agg(version) FROM "${schema}"."records_schema_version") AS versions`,
      [`"${schema}"."records"`, `"${schema}"."records_expires_at_idx"`],
    );
    expect(rows[0]).toEqual({ records: true, idx: true, versions: [1] });

    const again = capture();
    expect(await run(['init', '--store', url], again)).toBe(0);
    expect(again.stdout).toEqual([
      `postgres: "${schema}"."records" is already at schema version 1; nothing to do`,
    ]);
  });

  it('exits 1 when the server cannot be reached', async () => {
    const io = capture();
    expect(await run(['init', 'postgres://postgres@127.0.0.1:1/test'], io)).toBe(1);
    expect(io.stderr.join('\n')).toMatch(/init failed: .*ECONNREFUSED/);
  });
});

await describeWithService('mariadb', 'reprocess store init on MariaDB', () => {
  const table = `${RUN_ID}_cli`;
  afterAll(async () => {
    const pool = mysql.createPool({ uri: SERVICES.mariadb.url, connectionLimit: 1 });
    await pool.query(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_schema_version\``);
    await pool.end();
  });

  it('creates the table and schema version once, then leaves them', async () => {
    const url = `${SERVICES.mariadb.url}?table=${table}`;
    const first = capture();
    expect(await run(['init', url], first)).toBe(0);
    expect(first.stdout).toEqual([`mysql: created \`${table}\` at schema version 1 (applied 1)`]);
    const again = capture();
    expect(await run(['init', url], again)).toBe(0);
    expect(again.stdout).toEqual([
      `mysql: \`${table}\` is already at schema version 1; nothing to do`,
    ]);
  });
});
