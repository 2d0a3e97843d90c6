import { describe, expect, it } from 'vitest';
import {
  MAX_CONFIG_BYTES,
  loadConfig,
  parseConfig,
  parseConfigText,
} from '../../src/config/load-config.js';
import { ConfigError, isReprocessError } from '../../src/errors.js';
import { configFiles, DESIGN_EXAMPLE } from '../helpers/config-files.js';

const files = configFiles('reprocess-config-');

/** The ConfigError `load` fails with (failing the test when it does not). */
async function configError(load: () => Promise<unknown> | unknown): Promise<ConfigError> {
  let caught: unknown;
  try {
    await load();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  expect(isReprocessError(caught, 'CONFIG_INVALID')).toBe(true);
  return caught as ConfigError;
}

describe('loadConfig', () => {
  it('accepts the DESIGN.md example exactly as written', async () => {
    const config = await loadConfig(await files.write('design.yaml', DESIGN_EXAMPLE));
    expect(config).toEqual({
      idempotency: {
        key_source: 'requestId',
        store: 'key-value',
        ttl_hours: 24,
        on_duplicate: 'return_previous_result',
      },
      retry_policy: { max_attempts: 5, backoff: 'exponential', jitter: 'full' },
    });
  });

  it('reads JSON files and accepts objects', async () => {
    const object = {
      retry_policy: { profile: 'sync', deadline: '800ms', budget: { type: 'token_bucket' } },
    };
    const path = await files.write('policy.json', JSON.stringify(object));
    expect(await loadConfig(path)).toEqual(object);
    expect(await loadConfig(object)).toEqual(object);
  });

  it('accepts every documented field', () => {
    const config = parseConfigText(
      `idempotency:
  key_source: body.id
  scope: create-invoice
  store: postgres://app@127.0.0.1:5432/app
  ttl: 12h
  lease: 30s
  heartbeat: 10s
  on_duplicate: reject
  on_in_progress: wait
  in_progress_wait: 5s
  fingerprint: [body.amount, body.currency]
  remember_failures: false
  max_result_bytes: 65536
  max_steps: 50
  max_steps_bytes: 1048576
retry_policy:
  profile: async
  max_attempts: 8
  backoff: linear
  initial_delay: 500ms
  factor: 1.5
  max_delay: 2m
  jitter: decorrelated
  deadline: 1h
  attempt_timeout: 20s
  budget:
    type: ratio
    ratio: 0.1
    min_retries_per_second: 5
    window: 30s
`,
      'full.yaml',
    );
    expect(config.idempotency?.fingerprint).toEqual(['body.amount', 'body.currency']);
    expect(config.retry_policy?.budget).toEqual({
      type: 'ratio',
      ratio: 0.1,
      min_retries_per_second: 5,
      window: '30s',
    });
  });

  it('an unknown field names its path and the allowed fields', async () => {
    const error = await configError(() =>
      parseConfigText('retry_policy:\n  max_attempts: 3\n  jiter: full\n'),
    );
    expect(error.issues).toEqual([
      {
        path: 'retry_policy.jiter',
        message: expect.stringMatching(/unknown field.*max_attempts.*jitter/),
      },
    ]);
  });

  it('a negative count', async () => {
    const error = await configError(() => parseConfigText('retry_policy:\n  max_attempts: -1\n'));
    expect(error.issues).toEqual([
      { path: 'retry_policy.max_attempts', message: 'must be a whole number >= 1; got -1' },
    ]);
  });

  it('jitter: sideways lists the allowed values', async () => {
    const error = await configError(() => parseConfigText('retry_policy:\n  jitter: sideways\n'));
    expect(error.issues).toEqual([
      {
        path: 'retry_policy.jitter',
        message: 'must be one of none, full, equal, decorrelated; got "sideways"',
      },
    ]);
    expect(error.message).toContain(
      'retry_policy.jitter: must be one of none, full, equal, decorrelated',
    );
  });

  it('a malformed duration', async () => {
    const error = await configError(() =>
      parseConfigText('retry_policy:\n  deadline: 5 parsecs\n'),
    );
    expect(error.issues[0]?.path).toBe('retry_policy.deadline');
    expect(error.issues[0]?.message).toMatch(/duration.*250ms, 30s, 5m, 24h; got "5 parsecs"/);
  });

  it('a duration too long to be a number, naming the field', async () => {
    const error = await configError(() =>
      parseConfigText(`idempotency:\n  ttl: ${'9'.repeat(400)}h\n`),
    );
    expect(error.issues[0]?.path).toBe('idempotency.ttl');
    expect(error.issues[0]?.message).toMatch(/must be a duration/);
  });

  it('reads a JSON file that starts with a byte order mark', async () => {
    const path = await files.write('bom.json', '\uFEFF{"retry_policy": {"max_attempts": 3}}');
    expect(await loadConfig(path)).toEqual({ retry_policy: { max_attempts: 3 } });
  });

  it('a YAML syntax error, with its line', async () => {
    const path = await files.write('broken.yaml', 'retry_policy:\n  max_attempts: [1, 2\n');
    const error = await configError(() => loadConfig(path));
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.message).toMatch(/^YAML syntax error at line \d+, column \d+: /);
    expect(error.message).toContain(path);
  });

  it('a duplicate key is a syntax error, not a silent override', async () => {
    const error = await configError(() =>
      parseConfigText('retry_policy:\n  jitter: full\n  jitter: none\n'),
    );
    expect(error.issues[0]?.message).toMatch(/YAML syntax error.*unique/);
  });

  it('a JSON syntax error', async () => {
    const path = await files.write('broken.json', '{"retry_policy": {');
    const error = await configError(() => loadConfig(path));
    expect(error.issues[0]?.message).toMatch(/^JSON syntax error/);
  });

  it('an empty file, and a file with only comments', async () => {
    for (const text of ['', '   \n', '# nothing here\n']) {
      const error = await configError(async () =>
        loadConfig(await files.write('empty.yaml', text)),
      );
      expect(error.issues).toEqual([
        { path: '', message: expect.stringMatching(/^the config is empty/) },
      ]);
    }
  });

  it('a missing file', async () => {
    const error = await configError(() => loadConfig(files.path('nope.yaml')));
    expect(error.issues).toEqual([{ path: '', message: 'file not found' }]);
    expect(error.message).toContain('nope.yaml');
  });

  it('a file over 1 MiB, or a device that never ends, is refused before it is read whole', async () => {
    const big = await files.write('big.yaml', `# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`);
    for (const path of [big, '/dev/zero']) {
      const error = await configError(() => loadConfig(path));
      expect(error.issues).toEqual([
        { path: '', message: expect.stringMatching(/^larger than 1 MiB/) },
      ]);
    }
    // Up to the limit is read.
    const fits = `idempotency:\n  store: key-value\n# ${'x'.repeat(MAX_CONFIG_BYTES - 40)}\n`;
    expect(Buffer.byteLength(fits)).toBeLessThanOrEqual(MAX_CONFIG_BYTES);
    const config = await loadConfig(await files.write('fits.yaml', fits));
    expect(config.idempotency?.store).toBe('key-value');
  });

  it('an alias without its anchor, and an alias bomb, are ConfigError', async () => {
    const unresolved = await configError(async () =>
      loadConfig(
        await files.write('alias.yaml', 'idempotency:\n  store: memory\n  scope: *nope\n'),
      ),
    );
    expect(unresolved.issues).toEqual([
      { path: '', message: expect.stringMatching(/^YAML error: .*alias/i) },
    ]);
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 8; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const bomb = await configError(async () =>
      loadConfig(await files.write('bomb.yaml', `${levels.join('\n')}\n`)),
    );
    expect(bomb.issues).toEqual([{ path: '', message: expect.stringMatching(/^YAML error: /) }]);
  });

  it('a directory instead of a file', async () => {
    const error = await configError(() => loadConfig(files.dir()));
    expect(error.issues[0]?.message).toMatch(/directory/);
  });

  it('lists every problem in one error', async () => {
    const error = await configError(() =>
      parseConfigText(`idempotency:
  store: mongodb://db
  ttl_hours: 0
  on_duplicate: ignore
retry_policy:
  max_attempts: 0
  jitter: sideways
  deadline: soon
  colour: blue
extra: true
`),
    );
    expect(error.issues.map((i) => i.path).sort()).toEqual([
      'extra',
      'idempotency.on_duplicate',
      'idempotency.store',
      'idempotency.ttl_hours',
      'retry_policy.colour',
      'retry_policy.deadline',
      'retry_policy.jitter',
      'retry_policy.max_attempts',
    ]);
    expect(error.issues.find((i) => i.path === 'idempotency.on_duplicate')?.message).toBe(
      'must be one of return_previous_result, reject; got "ignore"',
    );
    expect(error.issues.find((i) => i.path === 'idempotency.store')?.message).toMatch(
      /postgres:\/\/.*redis:\/\/.*dynamodb:\/\/table.*mysql:\/\/.*sqlite:path/,
    );
  });

  it('rules across fields', async () => {
    const error = await configError(() =>
      parseConfig({
        idempotency: { ttl: '1h', ttl_hours: 1, in_progress_wait: '1s' },
        retry_policy: {
          base: 100,
          initial_delay: 200,
          cap: '1s',
          max_delay: '2s',
          budget: { type: 'ratio', capacity: 10 },
        },
      }),
    );
    expect(error.issues.map((i) => i.path).sort()).toEqual([
      'idempotency.in_progress_wait',
      'idempotency.ttl',
      'retry_policy.budget.capacity',
      'retry_policy.initial_delay',
      'retry_policy.max_delay',
    ]);
  });

  it('what createRatioBudget refuses, check refuses: a window under 10 ms, naming the field', async () => {
    const error = await configError(() =>
      parseConfig({ retry_policy: { budget: { type: 'ratio', window: '5ms' } } }),
    );
    expect(error.issues).toEqual([
      { path: 'retry_policy.budget.window', message: expect.stringMatching(/at least 10ms/) },
    ]);
    expect(() =>
      parseConfig({ retry_policy: { budget: { type: 'ratio', window: '10ms' } } }),
    ).not.toThrow();
  });

  it('what idempotent() refuses, check refuses: a heartbeat as long as the lease, a ttl past 100 years', async () => {
    for (const idempotency of [
      { heartbeat: '30s' },
      { heartbeat: '10s', lease: '5s' },
      { heartbeat: 2000, lease: 2000 },
    ]) {
      const error = await configError(() => parseConfig({ idempotency }));
      expect(error.issues.map((i) => i.path)).toEqual(['idempotency.heartbeat']);
      expect(error.message).toContain('shorter than the lease');
    }
    expect(parseConfig({ idempotency: { heartbeat: '29s' } }).idempotency?.heartbeat).toBe('29s');
    for (const idempotency of [{ ttl_hours: 100_000_000_000 }, { ttl: '1000000h' }]) {
      const error = await configError(() => parseConfig({ idempotency }));
      expect(error.message).toContain('100 years');
    }
  });

  it('refuses, naming the field, a key_source or fingerprint path that idempotent() refuses', async () => {
    for (const [idempotency, path] of [
      [{ key_source: 'body..id' }, 'idempotency.key_source'],
      [{ key_source: '.id' }, 'idempotency.key_source'],
      [{ fingerprint: 'a..b' }, 'idempotency.fingerprint'],
      [{ fingerprint: ['amount', 'customer.'] }, 'idempotency.fingerprint'],
    ] as const) {
      const error = await configError(() => parseConfig({ idempotency }));
      expect(error.issues.map((i) => i.path)).toEqual([path]);
      expect(error.message).toContain('field path');
    }
    expect(parseConfig({ idempotency: { key_source: 'body.id' } }).idempotency?.key_source).toBe(
      'body.id',
    );
  });

  it('takes ttl_hours as hours or as a duration (24h), and names the field otherwise', async () => {
    expect(parseConfig({ idempotency: { ttl_hours: '24h' } }).idempotency?.ttl_hours).toBe('24h');
    expect(parseConfig({ idempotency: { ttl_hours: 1.5 } }).idempotency?.ttl_hours).toBe(1.5);
    for (const ttl_hours of ['soon', 0, '0s', -1]) {
      const error = await configError(() => parseConfig({ idempotency: { ttl_hours } }));
      expect(error.issues.map((i) => i.path)).toEqual(['idempotency.ttl_hours']);
      expect(error.message).toContain('or a duration such as 30m or 24h');
    }
  });

  it('a budget without its type, and wrong types anywhere', async () => {
    const error = await configError(() =>
      parseConfig({
        retry_policy: { budget: { capacity: 5 }, factor: 'big' },
        idempotency: 'yes',
      }),
    );
    expect(error.issues).toEqual(
      expect.arrayContaining([
        {
          path: 'retry_policy.budget.type',
          message: 'is required (must be one of token_bucket, ratio)',
        },
        { path: 'retry_policy.factor', message: 'must be a number >= 1; got "big"' },
        {
          path: 'idempotency',
          message: 'must be a mapping of idempotency settings; got "yes"',
        },
      ]),
    );
  });

  it('a top level that is not a mapping', async () => {
    const error = await configError(() => parseConfigText('- 1\n- 2\n'));
    expect(error.issues).toEqual([
      { path: '', message: 'must be a mapping of idempotency and retry_policy; got a list' },
    ]);
    await configError(() => loadConfig(42 as never));
  });
});
