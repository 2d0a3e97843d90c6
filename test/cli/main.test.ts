import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { bufferIo } from '../helpers/cli-io.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('reprocess (main)', () => {
  it('--help prints the usage with every command on stdout', async () => {
    for (const flag of ['--help', '-h']) {
      const io = bufferIo();
      expect(await main([flag], io)).toBe(0);
      for (const command of ['check', 'demo', 'simulate', 'records', 'store', 'dlq']) {
        expect(io.stdout()).toContain(`  ${command} `);
      }
      expect(io.stderr()).toBe('');
    }
    const io = bufferIo();
    expect(await main(['help'], io)).toBe(0);
    expect(io.stdout()).toMatch(/^Usage: reprocess <command>/);
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string };
    const io = bufferIo();
    expect(await main(['--version'], io)).toBe(0);
    expect(io.stdout()).toBe(pkg.version);
  });

  it('an unknown command: usage on stderr, exit 2', async () => {
    const io = bufferIo();
    expect(await main(['frobnicate'], io)).toBe(2);
    expect(io.stderr()).toContain('unknown command "frobnicate"');
    expect(io.stderr()).toContain('Usage: reprocess <command>');
    expect(io.stdout()).toBe('');
  });

  it('a bad global flag: usage on stderr, exit 2', async () => {
    const io = bufferIo();
    expect(await main(['--frobnicate', 'check'], io)).toBe(2);
    expect(io.stderr()).toMatch(/frobnicate/);
    expect(io.stderr()).toContain('Usage: reprocess <command>');
  });

  it('no command: usage on stderr, exit 2', async () => {
    const io = bufferIo();
    expect(await main([], io)).toBe(2);
    expect(io.stderr()).toContain('no command given');
  });

  it('does not treat inherited object keys as commands', async () => {
    const io = bufferIo();
    expect(await main(['toString'], io)).toBe(2);
    expect(await main(['__proto__'], io)).toBe(2);
  });

  it('dispatches to the command with the rest of the arguments', async () => {
    const io = bufferIo();
    expect(await main(['check', '--help'], io)).toBe(0);
    expect(io.stdout()).toMatch(/^Usage: reprocess check <config>/);
    const viaHelp = bufferIo();
    expect(await main(['help', 'check'], viaHelp)).toBe(0);
    expect(viaHelp.stdout()).toBe(io.stdout());
  });

  it('as a process: exit code 2 for an unknown command, 0 for --version', () => {
    const unknown = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'nope'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('unknown command "nope"');
    const version = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '-v'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('as a process: a reader that goes away (| head) ends it quietly, not with an EPIPE stack', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'reprocess-epipe-')), 'sim.html');
    // `head -c 1` reads one byte and exits; the CLI then writes into a closed pipe.
    const piped = spawnSync(
      'sh',
      [
        '-c',
        `node --import tsx src/cli/main.ts simulate --requests 2000 --clients 10 --out ${out} | head -c 1 >/dev/null`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(piped.stderr).not.toMatch(/EPIPE|Unhandled/);
  });
});
