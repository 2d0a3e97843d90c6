import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../src/cli/commands/simulate.js';
import type { CliIo } from '../../src/cli/io.js';

function buffers(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t) };
}

describe('reprocess simulate', () => {
  it('prints the numbers as JSON, writes the report, and compares a policy from a config file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-sim-'));
    const config = join(dir, 'reprocess.yaml');
    await writeFile(
      config,
      'retry_policy:\n  max_attempts: 4\n  backoff: exponential\n  jitter: full\n',
    );
    const out = join(dir, 'sim.html');
    const io = buffers();
    const code = await run(
      [
        '--requests',
        '2000',
        '--rate',
        '100',
        '--outage',
        '5s-8s',
        '--clients',
        '10',
        '--config',
        config,
        '--out',
        out,
        '--json',
      ],
      io,
    );
    expect(io.stderr).toEqual([]);
    expect(code).toBe(0);
    const parsed = JSON.parse(io.stdout.join('')) as {
      dependency: Array<{ strategy: string; requests: number; calls: number }>;
      contention: Array<{ clients: number }>;
      report: string;
    };
    const names = parsed.dependency.map((d) => d.strategy);
    expect(names).toContain('your config');
    expect(names).toContain('full jitter + token bucket');
    for (const d of parsed.dependency) expect(d.requests).toBe(2000);
    expect(parsed.contention.every((c) => c.clients === 10)).toBe(true);
    expect(parsed.report).toBe(out);
    expect(await readFile(out, 'utf8')).toContain('<svg');
  });

  it('gives the same numbers for the same seed', async () => {
    const args = [
      '--requests',
      '1500',
      '--clients',
      '10',
      '--seed',
      '11',
      '--json',
      '--out',
      join(tmpdir(), 'rp-sim-seed.html'),
    ];
    const a = buffers();
    const b = buffers();
    await run(args, a);
    await run(args, b);
    expect(a.stdout.join('')).toBe(b.stdout.join(''));
  });

  it('rejects bad flags with usage and exit code 2', async () => {
    for (const args of [
      ['--bogus'],
      ['--requests', '-5'],
      ['--outage', '40s-20s'],
      ['--clients', 'ten'],
      // About n^2 / 2 calls without jitter: 100,000 clients would not finish in an hour.
      ['--clients', '100000'],
      ['--latency', 'soon'],
      // One request in 116 days of simulated time: more buckets than memory holds.
      ['--rate', '0.0000001', '--requests', '3'],
    ]) {
      const io = buffers();
      expect(await run(args, io)).toBe(2);
      expect(io.stderr.join('')).toMatch(/usage: reprocess simulate/);
    }
  });

  it("simulates the config's budget with its policy", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-sim-'));
    const policy = 'retry_policy:\n  max_attempts: 5\n  jitter: full\n  base: 100ms\n  cap: 10s\n';
    const budgeted = join(dir, 'budgeted.yaml');
    await writeFile(budgeted, `${policy}  budget:\n    type: token_bucket\n    capacity: 10\n`);
    const plain = join(dir, 'plain.yaml');
    await writeFile(plain, policy);
    const calls = async (config: string) => {
      const io = buffers();
      const args = ['--requests', '3000', '--rate', '200', '--outage', '5s-10s', '--clients', '10'];
      expect(
        await run([...args, '--config', config, '--json', '--out', join(dir, 'x.html')], io),
      ).toBe(0);
      const parsed = JSON.parse(io.stdout.join('')) as {
        dependency: Array<{ strategy: string; calls: number; budget?: string }>;
      };
      return parsed.dependency.find((d) => d.strategy === 'your config');
    };
    const withBudget = await calls(budgeted);
    const without = await calls(plain);
    // A 10-token bucket cuts the retries of the outage short.
    expect(withBudget?.calls).toBeLessThan(without?.calls ?? 0);
  });

  it('takes --overload and --outage together, and refuses a fractional seed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-sim-'));
    const io = buffers();
    const args = ['--requests', '1000', '--clients', '10', '--json', '--out', join(dir, 'x.html')];
    expect(await run([...args, '--overload', '1s-2s:2', '--outage', '3s-4s'], io)).toBe(0);
    const { scenario } = JSON.parse(io.stdout.join('')) as {
      scenario: { surge?: unknown; outage?: unknown };
    };
    expect(scenario.surge).toMatchObject({ startMs: 1000, endMs: 2000, factor: 2 });
    expect(scenario.outage).toMatchObject({ startMs: 3000, endMs: 4000 });
    const fractional = buffers();
    expect(await run([...args, '--seed', '1.7'], fractional)).toBe(2);
    expect(fractional.stderr.join('')).toMatch(/--seed must be a whole number/);
    // Past 32 bits a seed would repeat a smaller one's run.
    const huge = buffers();
    expect(await run([...args, '--seed', '4294967303'], huge)).toBe(2);
    expect(huge.stderr.join('')).toMatch(/from 0 to 4294967295/);
  });

  it('answers a scenario past its bounds, and an --out in no directory, as usage errors', async () => {
    const huge = buffers();
    expect(await run(['--requests', '60000000', '--out', join(tmpdir(), 'x.html')], huge)).toBe(2);
    expect(huge.stderr.join('')).toMatch(/requests must be an integer <= 50,000,000/);
    const nowhere = buffers();
    expect(await run(['--out', '/nonexistent-dir-of-reprocess/x.html'], nowhere)).toBe(2);
    expect(nowhere.stderr.join('')).toMatch(/no such directory/);
    const directory = buffers();
    expect(await run(['--requests', '100', '--out', tmpdir()], directory)).toBe(2);
    expect(directory.stderr.join('')).toMatch(/is a directory; give a file path/);
    const full = buffers();
    expect(await run(['--requests', '100', '--json', '--out', '/dev/full'], full)).toBe(1);
    expect(full.stderr.join('')).toBe(
      'reprocess simulate: cannot write the report /dev/full (ENOSPC)',
    );
  });

  it('reports an invalid config file with exit code 1 and the field path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-sim-'));
    const config = join(dir, 'bad.yaml');
    await writeFile(config, 'retry_policy:\n  jitter: sideways\n');
    const io = buffers();
    expect(
      await run(['--config', config, '--requests', '100', '--out', join(dir, 'x.html')], io),
    ).toBe(1);
    expect(io.stderr.join('')).toMatch(/retry_policy\.jitter/);
  });
});
