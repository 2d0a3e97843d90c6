import { describe, expect, it } from 'vitest';
import { idempotent } from '../../src/idempotency/idempotent.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import {
  idempotencySettingsFromConfig,
  retryOptionsFromConfig,
} from '../../src/config/from-config.js';
import { parseConfigText } from '../../src/config/load-config.js';
import { parseStoreSpec, tryParseStoreSpec } from '../../src/config/store-spec.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { resolveRetryOptions } from '../../src/retry/resolve-options.js';
import type { RatioBudget } from '../../src/retry/ratio-budget.js';
import type { TokenBucketBudget } from '../../src/retry/token-bucket-budget.js';

describe('retryOptionsFromConfig', () => {
  it('converts the DESIGN.md example', () => {
    const config = parseConfigText(
      'retry_policy:\n  max_attempts: 5\n  backoff: exponential\n  jitter: full\n',
    );
    expect(retryOptionsFromConfig(config.retry_policy)).toEqual({
      maxAttempts: 5,
      backoff: 'exponential',
      jitter: 'full',
    });
  });

  it('starts from the profile and lets fields override it, durations in ms', () => {
    const options = retryOptionsFromConfig({
      profile: 'sync',
      deadline: '800ms',
      initial_delay: '20ms',
      max_delay: '1s',
    });
    const resolved = resolveRetryOptions(options);
    expect(resolved.maxAttempts).toBe(3);
    expect(resolved.deadline).toBe(800);
    expect(resolved.attemptTimeout).toBe(1000);
    expect(resolved.backoff.base).toBe(20);
    expect(resolved.backoff.cap).toBe(1000);
  });

  it('creates the configured budget', () => {
    const bucket = retryOptionsFromConfig({
      budget: { type: 'token_bucket', capacity: 50, retry_cost: 10 },
    }).budget as TokenBucketBudget;
    expect(bucket.capacity).toBe(50);
    expect(bucket.tryAcquireRetry(undefined)).toBe(true);
    expect(bucket.tokens).toBe(40);
    const ratio = retryOptionsFromConfig({
      budget: { type: 'ratio', ratio: 0, min_retries_per_second: 1, window: '2s' },
    }).budget as RatioBudget;
    expect(ratio.remaining()).toBe(2);
  });

  it('gives {} without a retry_policy', () => {
    expect(retryOptionsFromConfig(undefined)).toEqual({});
  });
});

describe('idempotencySettingsFromConfig', () => {
  it('reads ttl_hours written as a duration', () => {
    expect(idempotencySettingsFromConfig({ ttl_hours: '24h' }).ttl).toBe(86_400_000);
    expect(idempotencySettingsFromConfig({ ttl_hours: 2 }).ttl).toBe(7_200_000);
  });

  it('fills the defaults for the DESIGN.md example', () => {
    const config = parseConfigText(
      'idempotency:\n  key_source: requestId\n  store: key-value\n  ttl_hours: 24\n  on_duplicate: return_previous_result\n',
    );
    expect(idempotencySettingsFromConfig(config.idempotency)).toEqual({
      key: 'requestId',
      scope: undefined,
      store: { kind: 'sqlite', path: undefined },
      ttl: 86_400_000,
      lease: 30_000,
      heartbeat: true,
      onDuplicate: 'return_previous_result',
      onInProgress: 'reject',
      fingerprint: undefined,
      rememberFailures: undefined,
      maxResultBytes: undefined,
      maxSteps: undefined,
      maxStepsBytes: undefined,
    });
  });

  it('converts durations, wait and fingerprint', () => {
    const settings = idempotencySettingsFromConfig({
      ttl: '2h',
      lease: '10s',
      heartbeat: '3s',
      on_in_progress: 'wait',
      in_progress_wait: '4s',
      fingerprint: false,
      store: 'redis://127.0.0.1:6379',
    });
    expect(settings.ttl).toBe(7_200_000);
    expect(settings.lease).toBe(10_000);
    expect(settings.heartbeat).toBe(3000);
    expect(settings.onInProgress).toEqual({ wait: 4000 });
    expect(settings.fingerprint).toBe(false);
    expect(settings.store).toEqual({ kind: 'redis', url: 'redis://127.0.0.1:6379' });
  });
});

describe('idempotencySettingsFromConfig builds what idempotent() accepts', () => {
  it('a tiny ttl_hours is 1 ms, never 0; a fraction of an hour is whole ms', async () => {
    expect(idempotencySettingsFromConfig({ ttl_hours: 1.1 }).ttl).toBe(3_960_000);
    const settings = idempotencySettingsFromConfig({ ttl_hours: 0.0000001 });
    expect(settings.ttl).toBe(1);
    const run = idempotent(async () => 'ok', {
      store: createMemoryStore(),
      key: 'id',
      scope: 'op',
      ttl: settings.ttl,
    });
    await expect(run({ id: 'a' })).resolves.toBe('ok');
  });

  it('idempotent() refuses a ttl or lease past 100 years', () => {
    for (const options of [{ ttl: '1000000h' }, { lease: 4e12 }]) {
      expect(() =>
        idempotent(async () => 1, {
          store: createMemoryStore(),
          key: 'id',
          scope: 'op',
          ...options,
        }),
      ).toThrow(/at most 100 years/);
    }
  });
});

describe('parseStoreSpec', () => {
  it.each([
    ['key-value', { kind: 'sqlite', path: undefined }],
    ['sqlite:./data/reprocess.db', { kind: 'sqlite', path: './data/reprocess.db' }],
    ['sqlite:///var/lib/r.db', { kind: 'sqlite', path: '/var/lib/r.db' }],
    [
      'sqlite:data/my%20orders.sqlite?table=payments',
      { kind: 'sqlite', path: 'data/my orders.sqlite', table: 'payments' },
    ],
    [
      'postgres://u:p@127.0.0.1:5432/app',
      { kind: 'postgres', url: 'postgres://u:p@127.0.0.1:5432/app' },
    ],
    ['postgresql://127.0.0.1/app', { kind: 'postgres', url: 'postgresql://127.0.0.1/app' }],
    ['rediss://cache.example:6380', { kind: 'redis', url: 'rediss://cache.example:6380' }],
    [
      'mysql://root@127.0.0.1:3306/test',
      { kind: 'mysql', url: 'mysql://root@127.0.0.1:3306/test' },
    ],
    [
      'dynamodb://Idempotency-Table?region=eu-west-1&endpoint=http://127.0.0.1:4567',
      {
        kind: 'dynamodb',
        table: 'Idempotency-Table',
        region: 'eu-west-1',
        endpoint: 'http://127.0.0.1:4567',
      },
    ],
  ])('%s', (text, expected) => {
    expect(parseStoreSpec(text)).toEqual(expected);
  });

  it.each([
    '',
    'memory',
    'mongodb://x',
    'postgres://',
    'sqlite:',
    'sqlite:?table=t',
    'sqlite:x.sqlite?foo=1',
    'sqlite:x.sqlite?batch=maybe',
    'sqlite:data/100%.sqlite',
    'dynamodb://x',
    'http://x',
  ])('rejects %j', (text) => {
    expect(tryParseStoreSpec(text)).toBeUndefined();
    expect(() => parseStoreSpec(text)).toThrow(InvalidArgumentError);
  });
});
