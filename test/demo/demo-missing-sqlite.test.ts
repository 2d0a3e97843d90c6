import { describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli/commands/demo.js';
import { bufferIo } from '../helpers/cli-io.js';

// As on a machine where the driver was never installed: importing it fails.
vi.mock('better-sqlite3', () => {
  throw new Error("Cannot find package 'better-sqlite3' imported from reprocess");
});

describe('reprocess demo without better-sqlite3', () => {
  it('says which package to install (exit 1), also with --store, instead of a stack trace', async () => {
    for (const args of [[], ['--store', 'memory:']]) {
      const io = bufferIo();
      const code = await run(['--invoices', '2', '--out', '/tmp/unused-report.html', ...args], io);
      expect(code).toBe(1);
      expect(io.stderr()).toContain('npm install better-sqlite3@12');
      expect(io.stderr()).not.toContain('    at ');
    }
  });

  it('lines up every option of its help, however long the flag', async () => {
    const io = bufferIo();
    expect(await run(['--help'], io)).toBe(0);
    const rows = `${io.stdout()}\n${io.stderr()}`.split('\n').filter((l) => l.startsWith('  --'));
    for (const row of rows) expect(row).toMatch(/^ {2}--\S+( \S+)? {2,}\S/);
  });
});
