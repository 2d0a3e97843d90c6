import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { openStore } from '../../src/stores/open-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const FP = 'f'.repeat(64);

let cwd: string;
beforeEach(() => {
  cwd = mkdtempSync(join(tmpdir(), 'reprocess-open-store-'));
});
afterEach(() => {
  rmSync(cwd, { recursive: true, force: true });
});

describe('openStore', () => {
  it('is exported from the package root, as the README shows it', async () => {
    const root = await import('../../src/index.js');
    expect(root.openStore).toBe(openStore);
  });

  it("opens the embedded default for 'key-value' under cwd, creating the directory", async () => {
    const store = await openStore('key-value', { cwd });
    expect(store.name).toBe('sqlite');
    expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
    await store.close?.();
    expect(existsSync(join(cwd, '.reprocess', 'idempotency.sqlite'))).toBe(true);

    // The same file again: the record is there.
    const again = await openStore('key-value', { cwd });
    expect((await again.get('k'))?.status).toBe('in_progress');
    await again.close?.();
  });

  it('resolves a relative sqlite: path against cwd and keeps its parameters', async () => {
    const clock = new FakeClock();
    const store = await openStore('sqlite:data/x.sqlite?table=custom', { cwd, clock });
    const begun = await store.begin('k', FP, 1000, 60_000);
    expect(begun.kind === 'acquired' && begun.leaseUntil).toBe(clock.now() + 1000);
    await store.close?.();
    expect(existsSync(join(cwd, 'data', 'x.sqlite'))).toBe(true);
  });

  it('opens in-memory stores', async () => {
    for (const spec of ['memory:', 'sqlite::memory:']) {
      const store = await openStore(spec, { cwd });
      expect(store.name).toBe(spec === 'memory:' ? 'memory' : 'sqlite');
      expect((await store.begin('k', FP, 1000, 60_000)).kind).toBe('acquired');
      await store.close?.();
    }
  });

  // These drivers connect lazily, so opening needs no server: the store's name shows which
  // module the URL reached. (They are exercised against real servers in test/integration.)
  it('dispatches server URLs to their driver modules', async () => {
    const cases: Array<[string, string]> = [
      ['postgres://app@127.0.0.1:1/db', 'postgres'],
      ['postgresql://app@127.0.0.1:1/db', 'postgres'],
      ['mysql://app@127.0.0.1:1/db', 'mysql'],
      ['mariadb://app@127.0.0.1:1/db', 'mysql'],
      ['redis://127.0.0.1:1', 'redis'],
      ['dynamodb://idempotency_table?endpoint=http://127.0.0.1:1&region=us-east-1', 'dynamodb'],
    ];
    for (const [url, name] of cases) {
      const store = await openStore(url);
      expect(store.name, url).toBe(name);
      await store.close?.();
    }
  });

  it('rejects unknown forms with InvalidArgumentError listing the accepted ones', async () => {
    for (const spec of ['ftp://x', 'kv', '', 'postgres:no-slashes', 42 as unknown as string]) {
      const error = await openStore(spec).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string },
      );
      expect(error?.code, String(spec)).toBe(ErrorCode.INVALID_ARGUMENT);
      expect(error?.message).toContain("'key-value'");
      expect(error?.message).toContain('postgres://');
      expect(error?.message).toContain('dynamodb://');
    }
  });

  it('passes a bad sqlite URL on as the typed error of the sqlite store', async () => {
    await expect(openStore('sqlite:x.db?colour=blue', { cwd })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringContaining('unknown parameter "colour"'),
    });
  });
});
