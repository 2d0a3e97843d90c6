import { describe, expect, it } from 'vitest';
import { openMysqlStore } from '../../src/stores/mysql/index.js';
import { CLIENT_WAIT_MARGIN_MS, poolTimeouts } from '../../src/stores/pool-timeouts.js';
import { openPostgresStore } from '../../src/stores/postgres/index.js';

describe('timeouts of a store pool', () => {
  it('defaults to 5 s to connect and 15 s a statement; the client waits a margin longer than the server', () => {
    expect(poolTimeouts('x', {})).toEqual({
      connectMs: 5000,
      statementMs: 15_000,
      clientMs: 15_000 + CLIENT_WAIT_MARGIN_MS,
    });
    expect(poolTimeouts('x', { connectTimeoutMs: 250, queryTimeoutMs: 300 })).toEqual({
      connectMs: 250,
      statementMs: 300,
      clientMs: 300 + CLIENT_WAIT_MARGIN_MS,
    });
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 3_600_001, '1000', null])(
    'refuses %s as a timeout, naming the option',
    (bad) => {
      expect(() => poolTimeouts('openX', { queryTimeoutMs: bad })).toThrow(
        expect.objectContaining({
          code: 'INVALID_ARGUMENT',
          message: expect.stringContaining('openX: queryTimeoutMs must be an integer'),
        }),
      );
      expect(() => poolTimeouts('openX', { connectTimeoutMs: bad })).toThrow(/connectTimeoutMs/);
    },
  );

  it('openPostgresStore and openMysqlStore check them before connecting', async () => {
    await expect(
      openPostgresStore('postgres://127.0.0.1:1/x', { queryTimeoutMs: -5 }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('openPostgresStore'),
    });
    await expect(
      openMysqlStore('mysql://127.0.0.1:1/x', { connectTimeoutMs: 0 }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('openMysqlStore'),
    });
  });
});
