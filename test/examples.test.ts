import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const dir = join(import.meta.dirname, '..', 'examples');
const examples = readdirSync(dir).filter((f) => f.endsWith('.ts'));

describe('examples run as written', () => {
  it('has examples', () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
  });
  for (const file of examples) {
    it(`examples/${file} runs and ends with ok`, async () => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', join(dir, file)], {
        timeout: 60_000,
      });
      expect(stdout.trim().split('\n').at(-1)).toBe('ok');
    }, 90_000);
  }
});
