import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';

const WORKER = fileURLToPath(new URL('./fixtures/sqlite-race-worker.ts', import.meta.url));
const PROCESSES = 8;
const KEYS = 300;

interface WorkerReport {
  worker: number;
  acquired: Array<{ key: string; token: number }>;
  existing: number;
}

interface Worker {
  /** Resolves once the worker has opened the store and waits for the start signal. */
  ready: Promise<void>;
  start(): void;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function spawnWorker(path: string, worker: number): Worker {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', WORKER, path, String(worker), String(KEYS)],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (stdout.startsWith('ready\n')) markReady();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        markReady();
        resolve({ code, stdout: stdout.replace(/^ready\n/, ''), stderr });
      });
    },
  );
  return { ready, start: () => child.stdin.end('go\n'), done };
}

const dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-mp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sqlite store across processes', () => {
  it(`${PROCESSES} processes racing on ${KEYS} keys of one file: each key acquired exactly once`, async () => {
    const path = join(dir, 'race.sqlite');
    // Every worker loads (tsx start-up is slow on a busy machine), then all start at once.
    const workers = Array.from({ length: PROCESSES }, (_, worker) => spawnWorker(path, worker));
    await Promise.all(workers.map((w) => w.ready));
    for (const w of workers) w.start();
    const runs = await Promise.all(workers.map((w) => w.done));

    for (const run of runs) {
      expect(run.stderr).not.toMatch(/SQLITE_BUSY|database is locked/);
      expect(run.code, run.stderr).toBe(0);
    }
    const reports = runs.map((run) => JSON.parse(run.stdout.trim()) as WorkerReport);
    const winners = new Map<string, Array<{ worker: number; token: number }>>();
    for (const report of reports) {
      expect(report.acquired.length + report.existing).toBe(KEYS);
      for (const { key, token } of report.acquired) {
        winners.set(key, [...(winners.get(key) ?? []), { worker: report.worker, token }]);
      }
    }
    expect(winners.size).toBe(KEYS);
    const doubles = [...winners].filter(([, list]) => list.length !== 1);
    expect(doubles).toEqual([]);

    // The file agrees: every key completed once, by its one winner, with the winner's token.
    const store = createSqliteStore({ path });
    for (const [key, list] of winners) {
      const record = await store.get(key);
      const winner = list[0];
      expect(record).toMatchObject({
        status: 'completed',
        attempts: 1,
        token: winner?.token,
        result: JSON.stringify({ worker: winner?.worker }),
      });
    }
    await store.close();
  }, 120_000);
});
