import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';

function tempFile(): { path: string; remove: () => Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'reprocess-sqlite-'));
  return {
    path: join(dir, 'idempotency.sqlite'),
    remove: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

describeStoreConformance('sqlite file (fake clock)', async () => {
  const clock = new FakeClock();
  const file = tempFile();
  return {
    store: createSqliteStore({ path: file.path, clock }),
    clock,
    restart: async () => createSqliteStore({ path: file.path, clock }),
    connect: async () => createSqliteStore({ path: file.path, clock }),
    cleanup: file.remove,
  };
});

describeStoreConformance('sqlite file (real time)', async () => {
  const file = tempFile();
  return {
    store: createSqliteStore({ path: file.path, clock: systemClock }),
    restart: async () => createSqliteStore({ path: file.path }),
    connect: async () => createSqliteStore({ path: file.path }),
    cleanup: file.remove,
  };
});

// Group commit is on by default (above); the same cases with one transaction per call.
describeStoreConformance('sqlite file, batch: false (fake clock)', async () => {
  const clock = new FakeClock();
  const file = tempFile();
  return {
    store: createSqliteStore({ path: file.path, clock, batch: false }),
    clock,
    restart: async () => createSqliteStore({ path: file.path, clock, batch: false }),
    connect: async () => createSqliteStore({ path: file.path, clock, batch: false }),
    cleanup: file.remove,
  };
});

describeStoreConformance('sqlite file, batch: false (real time)', async () => {
  const file = tempFile();
  return {
    store: createSqliteStore({ path: file.path, clock: systemClock, batch: false }),
    restart: async () => createSqliteStore({ path: file.path, batch: false }),
    connect: async () => createSqliteStore({ path: file.path, batch: false }),
    cleanup: file.remove,
  };
});
