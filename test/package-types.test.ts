/**
 * The declarations a user's compiler reads for each subpath, walked from its `types` entry
 * through their relative imports (`npm test` builds dist/ before the tests run). A driver that
 * ships no types of its own (better-sqlite3, pg, express, aws-lambda: types from @types/*)
 * must not be imported there, or every user would need those @types packages to compile:
 * the public API names structural types instead. Without a build there is nothing to walk:
 * the first case fails and says so, rather than the suite skipping quietly.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const UNTYPED = ['better-sqlite3', 'pg', 'express', 'aws-lambda'];

function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)].map(
    (m) => m[1] as string,
  );
}

/** Every bare module a declaration file reaches, by the file that imports it. */
function reachedModules(entry: string): Map<string, string> {
  const seen = new Set<string>();
  const bare = new Map<string, string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of specifiers(file)) {
      if (spec.startsWith('.')) {
        queue.push(join(dirname(file), spec.replace(/\.js$/, '.d.ts')));
      } else if (!spec.startsWith('node:')) {
        bare.set(spec, file);
      }
    }
  }
  return bare;
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, { types?: string } | string>;
};
const entries = Object.entries(pkg.exports).flatMap(([subpath, target]) =>
  typeof target === 'object' && target.types ? [[subpath, target.types] as const] : [],
);

describe('published declarations', () => {
  it('are built (npm test builds them first; alone, run npm run build)', () => {
    expect(existsSync(join(root, 'dist', 'index.d.ts'))).toBe(true);
  });

  it.each(entries)('%s reaches no driver that ships without types', (_subpath, types) => {
    const reached = reachedModules(join(root, types));
    const untyped = [...reached].filter(([spec]) =>
      UNTYPED.some((name) => spec === name || spec.startsWith(`${name}/`)),
    );
    expect(untyped).toEqual([]);
  });
});
