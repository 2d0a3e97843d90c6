import { describe, expect, it } from 'vitest';
import { type CheckReport, formatMs, run } from '../../src/cli/commands/check.js';
import { main } from '../../src/cli/main.js';
import { bufferIo } from '../helpers/cli-io.js';
import { configFiles, DESIGN_EXAMPLE } from '../helpers/config-files.js';

const files = configFiles('reprocess-check-');

async function report(path: string, ...flags: string[]): Promise<CheckReport> {
  const io = bufferIo();
  expect(await run([path, '--json', ...flags], io)).toBe(0);
  return JSON.parse(io.stdout()) as CheckReport;
}

describe('reprocess check', () => {
  it('a good file: exit 0, the effective policy and the delay table', async () => {
    const path = await files.write('design.yaml', DESIGN_EXAMPLE);
    const io = bufferIo();
    expect(await main(['check', path], io)).toBe(0);
    const out = io.stdout();
    expect(out).toContain(`${path}: valid`);
    expect(out).toMatch(/max attempts\s+5/);
    expect(out).toMatch(/backoff\s+exponential, base 100ms, factor 2, cap 30s/);
    expect(out).toMatch(/jitter\s+full/);
    // full jitter of 100 * 2^n: min 0, median d/2, max d, for attempts 2..5
    expect(out).toMatch(/^ {2}2\s+0ms\s+50ms\s+100ms\s+100ms$/m);
    expect(out).toMatch(/^ {2}5\s+0ms\s+400ms\s+800ms\s+1\.5s$/m);
    expect(out).toContain('worst-case time asleep: 1.5s');
    expect(out).toContain('worst-case total time: unbounded');
    expect(out).toMatch(/keySource\s+requestId/);
    expect(io.stderr()).toBe('');
  });

  it('--json: exact rows for none and equal jitter', async () => {
    const none = await report(
      await files.write(
        'none.yaml',
        'retry_policy:\n  max_attempts: 4\n  base: 1s\n  cap: 3s\n  jitter: none\n',
      ),
    );
    expect(none.delays).toEqual([
      { attempt: 2, min: 1000, median: 1000, max: 1000, cumulativeMax: 1000 },
      { attempt: 3, min: 2000, median: 2000, max: 2000, cumulativeMax: 3000 },
      { attempt: 4, min: 3000, median: 3000, max: 3000, cumulativeMax: 6000 },
    ]);
    expect(none.worstCaseSleep).toBe(6000);
    const equal = await report(
      await files.write(
        'equal.yaml',
        'retry_policy:\n  max_attempts: 2\n  backoff: linear\n  base: 400ms\n  jitter: equal\n',
      ),
    );
    expect(equal.delays).toEqual([
      { attempt: 2, min: 200, median: 300, max: 400, cumulativeMax: 400 },
    ]);
  });

  it('a max_attempts in the millions or billions: 100 rows, the rest summed, exact worst case', async () => {
    // Exponential from 100 ms, cap 30 s: 100 * (2^9 - 1) ms over the first nine retries, then
    // 30 s for each of the rest.
    const million = await report(
      await files.write('million.yaml', 'retry_policy:\n  max_attempts: 1000000\n'),
    );
    expect(million.delays).toHaveLength(100);
    expect(million.delays.at(-1)?.attempt).toBe(101);
    expect(million.laterAttempts).toEqual({
      from: 102,
      to: 1_000_000,
      lastMax: 30_000,
      cumulativeMax: 51_100 + (999_999 - 9) * 30_000,
    });
    expect(million.worstCaseSleep).toBe(51_100 + (999_999 - 9) * 30_000);
    const billion = await report(
      await files.write(
        'billion.yaml',
        'retry_policy:\n  max_attempts: 1000000000\n  jitter: decorrelated\n',
      ),
    );
    expect(billion.delays).toHaveLength(100);
    expect(billion.laterAttempts?.to).toBe(1_000_000_000);
    // Linear by 1 ms up to a 2,000 s cap: past a million rows the rest is summed in closed form.
    const linear = await report(
      await files.write(
        'linear.yaml',
        'retry_policy:\n  max_attempts: 3000000\n  backoff: linear\n  base: 1ms\n  cap: 2000s\n  jitter: none\n',
      ),
    );
    // 1 + 2 + ... + 1,999,999 ms, then 2,000,000 ms for each of the last 1,000,000 retries.
    expect(linear.worstCaseSleep).toBe((1_999_999 * 2_000_000) / 2 + 2_000_000 * 1_000_000);
    const io = bufferIo();
    const path = await files.write('text.yaml', 'retry_policy:\n  max_attempts: 1000000\n');
    expect(await run([path], io)).toBe(0);
    expect(io.stdout()).toContain('attempts 102 to 1000000: each at most 30s');
  });

  it('a max_attempts just past the rows shown sums like the rows would', async () => {
    const small = await report(
      await files.write('small.yaml', 'retry_policy:\n  max_attempts: 101\n  jitter: none\n'),
    );
    expect(small.laterAttempts).toBeUndefined();
    expect(small.worstCaseSleep).toBe(small.delays.at(-1)?.cumulativeMax);
    const more = await report(
      await files.write('more.yaml', 'retry_policy:\n  max_attempts: 103\n  jitter: none\n'),
    );
    expect(more.worstCaseSleep).toBe((small.delays.at(-1)?.cumulativeMax ?? 0) + 2 * 30_000);
  });

  it('a file that is not YAML at all: a short message, not the file', async () => {
    const path = await files.write('binary.yaml', `SQLite format 3\u0000${'x'.repeat(20_000)}`);
    const io = bufferIo();
    expect(await run([path], io)).toBe(1);
    expect(io.stderr()).toMatch(/a string of 20016 characters/);
    expect(io.stderr().length).toBeLessThan(500);
  });

  it('worst-case total: attempts at their timeout plus delays, bounded by the deadline', async () => {
    const sync = await report(await files.write('sync.yaml', 'retry_policy:\n  profile: sync\n'));
    expect(sync.policy.maxAttempts).toBe(3);
    expect(sync.worstCaseSleep).toBe(150);
    expect(sync.worstCaseTotal).toBe(2000); // 3 x 1s + 150ms > the 2s deadline
    const loose = await report(
      await files.write('loose.yaml', 'retry_policy:\n  profile: sync\n  deadline: 10s\n'),
    );
    expect(loose.worstCaseTotal).toBe(3150);
    const capped = await report(
      await files.write(
        'capped.yaml',
        'retry_policy:\n  max_attempts: 10\n  base: 1s\n  jitter: none\n  deadline: 5s\n',
      ),
    );
    expect(capped.worstCaseSleep).toBe(5000);
  });

  it('decorrelated: exact bounds, medians by seeded sampling (deterministic per seed)', async () => {
    const path = await files.write(
      'decorrelated.yaml',
      'retry_policy:\n  max_attempts: 10\n  base: 1s\n  cap: 5m\n  jitter: decorrelated\n',
    );
    const a = await report(path, '--seed', '7', '--samples', '2000');
    const b = await report(path, '--seed', '7', '--samples', '2000');
    expect(a.sampledMedians).toBe(true);
    expect(a.delays).toEqual(b.delays);
    expect(a.delays).toHaveLength(9);
    expect(a.delays[0]).toMatchObject({ attempt: 2, min: 1000, max: 3000 });
    expect(a.delays[1]).toMatchObject({ min: 1000, max: 9000 });
    expect(a.delays[8]).toMatchObject({ min: 1000, max: 300_000 });
    // the first delay is uniform on [1s, 3s]: median 2s
    expect(Math.abs((a.delays[0]?.median ?? 0) - 2000)).toBeLessThan(100);
    for (const row of a.delays) {
      expect(row.median).toBeGreaterThanOrEqual(row.min);
      expect(row.median).toBeLessThanOrEqual(row.max);
    }
  });

  it('a bad file: exit 1 with every problem on stderr', async () => {
    const path = await files.write(
      'bad.yaml',
      'retry_policy:\n  jitter: sideways\n  max_attempts: -2\n',
    );
    const io = bufferIo();
    expect(await main(['check', path], io)).toBe(1);
    expect(io.stderr()).toContain(`invalid configuration in ${path}`);
    expect(io.stderr()).toContain(
      'retry_policy.jitter: must be one of none, full, equal, decorrelated; got "sideways"',
    );
    expect(io.stderr()).toContain('retry_policy.max_attempts: must be a whole number >= 1; got -2');
    expect(io.stdout()).toBe('');
  });

  it('a missing file: exit 1', async () => {
    const io = bufferIo();
    expect(await run([files.path('missing.yaml')], io)).toBe(1);
    expect(io.stderr()).toContain('file not found');
  });

  it('usage errors: exit 2', async () => {
    for (const args of [
      [],
      ['a.yaml', 'b.yaml'],
      ['--frob', 'a.yaml'],
      ['--samples', '0', 'a.yaml'],
    ]) {
      const io = bufferIo();
      expect(await run(args, io), JSON.stringify(args)).toBe(2);
      expect(io.stderr()).toContain('Usage: reprocess check');
    }
  });

  it('hides a password in a store URL', async () => {
    const path = await files.write(
      'pg.yaml',
      'idempotency:\n  store: postgres://app:s3cret@127.0.0.1:5432/app\n',
    );
    const io = bufferIo();
    expect(await run([path], io)).toBe(0);
    expect(io.stdout()).not.toContain('s3cret');
    expect(io.stdout()).toContain('postgres postgres://app:***@127.0.0.1:5432/app');

    const inQuery = await files.write(
      'pg-query.yaml',
      'idempotency:\n  store: postgres://app@127.0.0.1:5432/app?password=hunter2&sslmode=require\n',
    );
    const shown = bufferIo();
    expect(await run([inQuery], shown)).toBe(0);
    expect(shown.stdout()).not.toContain('hunter2');
    expect(shown.stdout()).toContain('password=***');
    expect(shown.stdout()).toContain('sslmode=require');
  });

  it('hides a password in the value of an invalid config too', async () => {
    const path = await files.write(
      'bad-store.yaml',
      'idempotency:\n  store: postgres://app:hunter2@127.0.0.1:99999/db\n',
    );
    const io = bufferIo();
    expect(await run([path], io)).toBe(1);
    expect(io.stderr() + io.stdout()).not.toContain('hunter2');
  });

  it('formatMs', () => {
    expect([250, 1500, 3150, 90_000, 3_600_000, 86_400_000].map(formatMs)).toEqual([
      '250ms',
      '1.5s',
      '3.15s',
      '1m 30s',
      '1h',
      '24h',
    ]);
    // Rounded as a whole: never "1m 60s" or "1h 60m".
    expect([119_600, 239_700, 7_199_000, 3_599_700, 59_999, 999.996].map(formatMs)).toEqual([
      '2m',
      '4m',
      '2h',
      '1h',
      '1m',
      '1s',
    ]);
  });
});
