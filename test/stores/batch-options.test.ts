import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import { batchSettings } from '../../src/stores/batch-options.js';
import { createMysqlStore } from '../../src/stores/mysql/index.js';
import { createPostgresStore } from '../../src/stores/postgres/index.js';
import { createRedisStore } from '../../src/stores/redis/index.js';

const DEFAULTS = { maxBatchSize: 64, maxInFlight: 4 };

function invalid(make: () => unknown): Error {
  try {
    make();
  } catch (error) {
    expect(isReprocessError(error, ErrorCode.INVALID_ARGUMENT)).toBe(true);
    return error as Error;
  }
  throw new Error('expected an INVALID_ARGUMENT error');
}

describe('batchSettings', () => {
  it('absent or false: no batching; true: the defaults; an object: its fields over them', () => {
    expect(batchSettings('f', undefined, DEFAULTS)).toBeUndefined();
    expect(batchSettings('f', false, DEFAULTS)).toBeUndefined();
    expect(batchSettings('f', true, DEFAULTS)).toEqual(DEFAULTS);
    expect(batchSettings('f', { maxBatchSize: 8 }, DEFAULTS)).toEqual({
      maxBatchSize: 8,
      maxInFlight: 4,
    });
    expect(batchSettings('f', { maxBatchSize: 1000, maxInFlight: 1 }, DEFAULTS, 1000)).toEqual({
      maxBatchSize: 1000,
      maxInFlight: 1,
    });
  });

  it.each([
    ['yes', /f: batch must be a boolean or \{ maxBatchSize, maxInFlight \}, got "yes"/],
    [1, /got 1$/],
    [null, /got null$/],
    [[], /got object$/],
    [{ maxBatchSize: 0 }, /f: batch.maxBatchSize must be a whole number from 1 to 10000, got 0/],
    [{ maxBatchSize: 2.5 }, /batch.maxBatchSize .* got 2.5/],
    [{ maxInFlight: '4' }, /batch.maxInFlight .* got "4"/],
    [{ maxInFlight: 10_001 }, /batch.maxInFlight .* got 10001/],
  ])('%j is refused with a message naming the problem', (batch, message) => {
    expect(invalid(() => batchSettings('f', batch, DEFAULTS)).message).toMatch(message);
  });

  it('each store factory refuses a bad batch option with its own name (drivers not connected)', async () => {
    const pool = new pg.Pool({ connectionString: 'postgres://127.0.0.1:5432/test' });
    const mysqlPool = mysql.createPool({ uri: 'mysql://root@127.0.0.1:3306/test' });
    const redis = new Redis({ lazyConnect: true });
    try {
      expect(
        invalid(() => createPostgresStore(pool, { batch: { maxBatchSize: 0 } })).message,
      ).toMatch(/^createPostgresStore: batch.maxBatchSize/);
      expect(
        invalid(() => createMysqlStore(mysqlPool, { batch: { maxBatchSize: 1001 } })).message,
      ).toMatch(/^createMysqlStore: batch.maxBatchSize must be a whole number from 1 to 1000/);
      expect(invalid(() => createRedisStore(redis, { batch: 'on' as never })).message).toMatch(
        /^createRedisStore: batch must be a boolean/,
      );
    } finally {
      await pool.end();
      await mysqlPool.end();
      redis.disconnect();
    }
  });
});
