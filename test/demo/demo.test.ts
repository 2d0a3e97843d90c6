import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/commands/demo.js';
import type { CliIo } from '../../src/cli/io.js';
import { demoReport } from '../../src/demo/demo-report.js';
import { type DemoResult, type ModeResult, runDemo } from '../../src/demo/run-demo.js';
import { renderReport } from '../../src/report/html-report.js';
import { createMemorySource } from '../../src/consumer/memory-source.js';
import { DEFAULT_FAULT_RATES, FaultPlan } from '../../src/demo/faults.js';
import { startNaiveWorker } from '../../src/demo/receipt-worker.js';
import { EmailService } from '../../src/demo/world.js';
import { seededRandom } from '../../src/random.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { chromiumAvailable, inspectReport, launchChromium } from '../helpers/browser.js';

function buffers(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t) };
}

describe('reprocess demo (small configuration)', () => {
  let result: DemoResult;
  beforeAll(async () => {
    // Higher fault rates than the default so that 60 payments surely meet every fault.
    result = await runDemo({
      invoices: 60,
      seed: 7,
      rates: {
        orderTimeout: 0.2,
        lostResponse: 0.2,
        duplicateDelivery: 0.2,
        workerCrash: 0.1,
        slowOrder: 0.03,
      },
    });
  }, 120_000);

  it('the faults really cause harm without protection', () => {
    const u = result.unprotected;
    expect(u.faults.orderTimeout + u.faults.lostResponse).toBeGreaterThan(0);
    expect(u.chargedTwice).toBeGreaterThan(0);
    expect(u.emailsSentTwice).toBeGreaterThan(0);
  });

  it('with reprocess nobody is charged twice, no email goes twice, nothing is lost', () => {
    const p = result.protected;
    expect(p.faults.orderTimeout + p.faults.lostResponse).toBeGreaterThan(0);
    expect(p.workerCrashes + p.faults.duplicateDelivery).toBeGreaterThan(0);
    expect(p.chargedTwice).toBe(0);
    expect(p.duplicateOrders).toBe(0);
    expect(p.emailsSentTwice).toBe(0);
    expect(p.ordersLost).toBe(0);
    expect(p.receiptsNeverSent).toBe(0);
    expect(p.paymentsFailed).toBe(0);
  });

  it('every number is accounted for', () => {
    for (const m of [result.unprotected, result.protected] as ModeResult[]) {
      expect(m.requests).toBe(60);
      expect(m.attempts).toBe(m.requests + m.retries);
      expect(m.attemptTimes).toHaveLength(m.attempts);
      expect(m.handlerRuns).toBeLessThanOrEqual(m.attempts);
    }
    const u = result.unprotected;
    const p = result.protected;
    // Unprotected, every attempt reaches the handler and charges (or meets the busy provider).
    expect(u.handlerRuns).toBe(u.attempts);
    expect(u.providerCalls).toBe(u.handlerRuns);
    // Protected, a replayed or 409 answer never reaches the handler.
    expect(p.handlerRuns).toBeLessThanOrEqual(
      p.attempts - p.replaysServed - p.inProgress409 + p.lostResponses,
    );
    expect(p.replaysServed).toBeGreaterThan(0);
    // Quarantine: the outage's messages come back; only bounced addresses stay.
    expect(p.redriven).toBeLessThanOrEqual(p.quarantined);
    expect(p.stillQuarantined).toBe(p.quarantined - p.redriven);
    expect(p.stillQuarantined).toBe(p.faults.badEmail);
  });

  const browserSuite = chromiumAvailable() || process.env.REQUIRE_SERVICES === '1' ? it : it.skip;
  browserSuite(
    'the HTML report opens in headless Chromium without errors and shows its charts',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'reprocess-demo-report-'));
      const file = join(dir, 'demo.html');
      await writeFile(file, renderReport(demoReport(result)));
      const browser = await launchChromium();
      try {
        const check = await inspectReport(browser, file, resolve('test-results/demo-report.png'));
        expect(check.consoleErrors).toEqual([]);
        expect(check.pageErrors).toEqual([]);
        expect(check.charts).toBe(5);
        expect(check.chartsWithMarks).toBe(5);
      } finally {
        await browser.close();
      }
    },
    60_000,
  );
});

describe('reprocess demo command line', () => {
  it('rejects bad flags with usage and exit code 2', async () => {
    for (const args of [
      ['--nope'],
      ['--invoices', '0'],
      ['--order-timeout', '2'],
      // Empty is not 0: a fault must not be switched off unnoticed.
      ['--order-timeout', ''],
      ['--seed', 'x'],
    ]) {
      const io = buffers();
      expect(await run(args, io)).toBe(2);
      expect(io.stderr.join('')).toMatch(/usage: reprocess demo/);
    }
  });

  it('fails at once, with exit 1, on a store that does not answer; 2 for one no store accepts', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'reprocess-demo-cli-')), 'r.html');
    const down = buffers();
    const password = 's3cret-demo';
    expect(
      await run(
        ['--invoices', '5', '--store', `postgres://demo:${password}@127.0.0.1:1/x`, '--out', out],
        down,
      ),
    ).toBe(1);
    expect(down.stderr.join('')).toMatch(/reprocess demo: postgres store: get failed/);
    expect(down.stderr.join('') + down.stdout.join('')).not.toContain(password);
    const unknown = buffers();
    expect(await run(['--invoices', '5', '--store', 'foo://bar', '--out', out], unknown)).toBe(2);
  });

  it('refuses an --out in a directory that does not exist before running, with exit 2', async () => {
    const io = buffers();
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-demo-out-'));
    const store = join(dir, 'never-opened.sqlite');
    const args = ['--store', `sqlite:${store}`, '--out', '/nonexistent-dir-of-reprocess/r.html'];
    expect(await run(args, io)).toBe(2);
    expect(io.stderr.join('')).toMatch(/no such directory/);
    expect(io.stdout).toEqual([]);
    // It did not run the demo first: the store it would have opened was never created.
    expect(existsSync(store)).toBe(false);
    // An --out that is a directory: the same, before the run.
    const again = buffers();
    expect(await run(['--store', `sqlite:${store}`, '--out', dir], again)).toBe(2);
    expect(again.stderr.join('')).toMatch(/is a directory; give a file path/);
    expect(existsSync(store)).toBe(false);
  });

  it('a report that cannot be written after the run is one line on stderr, exit 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-demo-full-'));
    const io = buffers();
    const args = ['--invoices', '5', '--store', `sqlite:${join(dir, 's.sqlite')}`, '--json'];
    expect(await run([...args, '--out', '/dev/full'], io)).toBe(1);
    expect(io.stderr.join('')).toBe('reprocess demo: cannot write the report /dev/full (ENOSPC)');
  });

  it('gives another seed other faults, not the same ones on renumbered invoices', async () => {
    const small = { invoices: 40, concurrency: 4 };
    const [a, b] = await Promise.all([
      runDemo({ ...small, seed: 2 }),
      runDemo({ ...small, seed: 3 }),
    ]);
    const counts = (r: DemoResult) => Object.values(r.unprotected.faults).join(',');
    expect(counts(a)).not.toBe(counts(b));
  }, 120_000);

  it('on a store kept between runs, a second run makes its payments anew (no replay of the first)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-demo-kept-'));
    const store = `sqlite:${join(dir, 'kept.sqlite')}`;
    await runDemo({ invoices: 20, seed: 4, store });
    const second = await runDemo({ invoices: 20, seed: 4, store });
    // Every payment of the second run reached its handler in that run: none was answered
    // from the first run's records (the same seed made the same keys before).
    expect(second.protected.paymentsFailed).toBe(0);
    expect(second.protected.handlerRuns).toBeGreaterThanOrEqual(second.protected.requests);
    expect(second.store).toBe(store);
  }, 120_000);

  it('prints JSON numbers for scripts and the report path', async () => {
    const io = buffers();
    const out = join(await mkdtemp(join(tmpdir(), 'reprocess-demo-cli-')), 'r.html');
    const code = await run(['--invoices', '12', '--json', '--out', out, '--worker-crash', '0'], io);
    expect(code).toBe(0);
    const parsed = JSON.parse(io.stdout.join('')) as { protected: ModeResult; report: string };
    expect(parsed.report).toBe(out);
    expect(parsed.protected.chargedTwice).toBe(0);
    expect(parsed.protected.requests).toBe(12);
  }, 60_000);
});

describe('demo workers and the API, stopped', () => {
  it('the unprotected worker never starts again once stopped, even when every delivery crashes it', async () => {
    const clock = new FakeClock();
    const source = createMemorySource({ name: 'receipts', clock });
    const faults = new FaultPlan(1, { ...DEFAULT_FAULT_RATES, workerCrash: 1, badEmail: 0 });
    const email = new EmailService(faults, { from: 0, to: 0 });
    const worker = startNaiveWorker({ source, email, faults, clock, random: seededRandom(1) });
    source.publish({ body: { invoice: 1, amount: 5, customer: 'c' } });
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    await worker.stop();
    const deliveries = worker.log.deliveries;
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(worker.log.deliveries).toBe(deliveries);
    await source.close();
  });
});
