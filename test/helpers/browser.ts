import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium } from 'playwright-core';

/** Debian's Chromium; `npx playwright install` cannot work on this machine. */
export const CHROMIUM = '/usr/bin/chromium';

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM);
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

export interface PageCheck {
  consoleErrors: string[];
  pageErrors: string[];
  charts: number;
  chartsWithMarks: number;
  title: string;
}

/** Opens an HTML file, collects console and page errors, counts charts, saves a screenshot. */
export async function inspectReport(
  browser: Browser,
  file: string,
  screenshot: string,
): Promise<PageCheck> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  const charts = await page.locator('svg.chart').count();
  const chartsWithMarks = await page
    .locator('svg.chart')
    .evaluateAll((nodes) => nodes.filter((n) => n.querySelector('path.series, rect.bar')).length);
  const title = await page.title();
  await mkdir(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();
  return { consoleErrors, pageErrors, charts, chartsWithMarks, title };
}
