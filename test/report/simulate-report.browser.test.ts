import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderReport } from '../../src/report/html-report.js';
import { runSimulation, simulationReport } from '../../src/sim/run-simulation.js';
import { chromiumAvailable, inspectReport, launchChromium } from '../helpers/browser.js';

const required = process.env.REQUIRE_SERVICES === '1';
const suite = chromiumAvailable() || required ? describe : describe.skip;

suite(`simulate report in headless Chromium${chromiumAvailable() ? '' : ' [skipped: /usr/bin/chromium missing]'}`, () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('opens without console errors and shows every chart with data', async () => {
    const results = runSimulation({
      scenario: {
        requests: 3000,
        ratePerSecond: 200,
        capacityPerSecond: 300,
        latencyMs: 20,
        outage: { startMs: 5000, endMs: 8000 },
        seed: 5,
      },
      contention: { clients: [10, 50], opMs: 5 },
    });
    const dir = await mkdtemp(join(tmpdir(), 'reprocess-report-'));
    const file = join(dir, 'simulate.html');
    await writeFile(file, renderReport(simulationReport(results)));
    const check = await inspectReport(browser, file, resolve('test-results/simulate-report.png'));
    expect(check.consoleErrors).toEqual([]);
    expect(check.pageErrors).toEqual([]);
    expect(check.title).toContain('simulate');
    expect(check.charts).toBe(6);
    expect(check.chartsWithMarks).toBe(6);
  });
});
