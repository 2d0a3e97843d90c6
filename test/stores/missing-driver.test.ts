import { describe, expect, it, vi } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import { openMysqlStore } from '../../src/stores/mysql/index.js';
import { openPostgresStore } from '../../src/stores/postgres/index.js';
import { openRedisStore } from '../../src/stores/redis/index.js';

// As on a machine where the driver was never installed: importing it fails. (vi.mock is
// hoisted above every declaration, so each factory throws on its own.)
vi.mock('ioredis', () => {
  throw new Error("Cannot find package 'ioredis'");
});
vi.mock('pg', () => {
  throw new Error("Cannot find package 'pg'");
});
vi.mock('mysql2/promise', () => {
  throw new Error("Cannot find package 'mysql2'");
});

describe('a store whose driver is not installed', () => {
  it.each([
    ['redis', () => openRedisStore('redis://127.0.0.1:6379'), 'npm install ioredis'],
    ['postgres', () => openPostgresStore('postgres://127.0.0.1/test'), 'npm install pg'],
    ['mysql', () => openMysqlStore('mysql://root@127.0.0.1/test'), 'npm install mysql2'],
  ])('%s: StoreUnavailableError naming the package to install', async (_name, open, install) => {
    const error = await open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)).toBe(true);
    expect((error as Error).message).toContain(install);
  });
});
