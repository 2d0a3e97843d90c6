import { open } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { redactUrl } from '../redact-url.js';
import { toMs } from '../duration.js';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { DEFAULT_LEASE_MS } from '../idempotency/options.js';
import { ALLOWED_FIELDS, BUDGET_FIELDS, configSchema } from './schema.js';
import type { ReprocessConfig } from './types.js';

/**
 * Loads and validates a config: a path to a YAML or JSON file (JSON when the name ends in
 * `.json`), or an already parsed object. Any problem, whether a missing or empty file, a
 * syntax error, an unknown field, a bad value, gives ONE {@link ConfigError} that lists
 * every problem with its path and what is allowed; never a raw parser or zod error.
 *
 * @example
 * const config = await loadConfig('reprocess.yaml');
 * const policy = createRetryPolicy(retryOptionsFromConfig(config.retry_policy));
 */
export async function loadConfig(pathOrObject: string | object): Promise<ReprocessConfig> {
  if (typeof pathOrObject === 'string') {
    let text: string;
    try {
      text = await readBounded(pathOrObject);
    } catch (error) {
      throw new ConfigError([{ path: '', message: readProblem(error) }], pathOrObject);
    }
    return parseConfigText(text, pathOrObject);
  }
  if (typeof pathOrObject !== 'object' || pathOrObject === null) {
    throw new ConfigError([
      { path: '', message: `expected a file path or a config object, got ${String(pathOrObject)}` },
    ]);
  }
  return parseConfig(pathOrObject);
}

/**
 * Parses config text; `source` names the file in messages and picks the syntax (JSON for a
 * `.json` name, YAML otherwise; YAML also reads JSON).
 */
export function parseConfigText(text: string, source?: string): ReprocessConfig {
  if (text.trim() === '') {
    throw new ConfigError([{ path: '', message: emptyMessage() }], source);
  }
  let raw: unknown;
  if (source !== undefined && extname(source).toLowerCase() === '.json') {
    try {
      // A byte order mark, as some Windows editors write it, is not part of the JSON.
      raw = JSON.parse(text.startsWith('\uFEFF') ? text.slice(1) : text);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new ConfigError([{ path: '', message: `JSON syntax error: ${message}` }], source);
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
      const issues = doc.errors.map((e) => {
        const at = e.linePos?.[0];
        const where = at ? ` at line ${at.line}, column ${at.col}` : '';
        const what = firstLine(e.message).replace(/ at line \d+, column \d+:?$/, '');
        return { path: '', message: `YAML syntax error${where}: ${what}` };
      });
      throw new ConfigError(issues, source);
    }
    try {
      // Aliases are resolved here: one that names no anchor, or so many that they would
      // expand into an enormous tree (a "billion laughs" file), throws.
      raw = doc.toJS({ maxAliasCount: 100 });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new ConfigError([{ path: '', message: `YAML error: ${firstLine(message)}` }], source);
    }
  }
  if (raw === null || raw === undefined) {
    throw new ConfigError([{ path: '', message: emptyMessage() }], source);
  }
  return parseConfig(raw, source);
}

/** Validates an already parsed config object (see {@link loadConfig}). */
export function parseConfig(raw: unknown, source?: string): ReprocessConfig {
  const issues: ConfigIssue[] = [];
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) issues.push(...describeIssue(issue, raw));
  }
  issues.push(...crossFieldIssues(raw));
  if (issues.length > 0) {
    throw new ConfigError(dedupe(issues), source);
  }
  return result.data as ReprocessConfig;
}

function emptyMessage(): string {
  return 'the config is empty: expected a mapping with idempotency and/or retry_policy';
}

/** Largest config file read: a config is a page of YAML or JSON, not megabytes. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * The text of the file at `path`, read a chunk at a time up to {@link MAX_CONFIG_BYTES}: a
 * bigger file (or a device that never ends, such as /dev/zero) is refused before it fills
 * the memory. A pipe or /dev/stdin is read like a file.
 */
async function readBounded(path: string): Promise<string> {
  const file = await open(path, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > MAX_CONFIG_BYTES) {
        throw Object.assign(new Error('the file is too large'), { code: 'EFBIG' });
      }
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await file.close();
  }
}

function readProblem(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (code === 'EFBIG') {
    return `larger than ${MAX_CONFIG_BYTES / 1024 / 1024} MiB: a config file is a page of YAML or JSON`;
  }
  if (code === 'ENOENT') return 'file not found';
  if (code === 'EISDIR') return 'is a directory, not a file';
  if (code === 'EACCES') return 'permission denied';
  return `cannot read the file: ${error instanceof Error ? error.message : String(error)}`;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current = root;
  for (const part of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
}

function show(value: unknown): string {
  // A bad value can be a store URL with its password: shown without it.
  if (typeof value === 'string') {
    // A file that is not YAML at all (a database, a binary) parses as one long string.
    const text = JSON.stringify(redactUrl(value));
    return text.length <= 80 ? text : `a string of ${value.length} characters`;
  }
  if (typeof value === 'object' && value !== null) {
    return Array.isArray(value) ? 'a list' : 'a mapping';
  }
  return String(value);
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): ConfigIssue[] {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    const parent = pathText(path);
    const allowed = ALLOWED_FIELDS[parent] ?? [];
    return issue.keys.map((key) => ({
      path: parent === '' ? key : `${parent}.${key}`,
      message: `unknown field; allowed fields here: ${allowed.join(', ')}`,
    }));
  }
  const value = valueAt(raw, path);
  const message =
    value === undefined ? `is required (${issue.message})` : `${issue.message}; got ${show(value)}`;
  return [{ path: pathText(path), message }];
}

/** Rules across fields; read from the raw input so they apply even when zod failed. */
/** A duration's ms, or undefined when it is not one (the schema reports that). */
function durationOrUndefined(value: unknown): number | undefined {
  if (typeof value !== 'number' && typeof value !== 'string') return undefined;
  try {
    return toMs(value);
  } catch {
    return undefined;
  }
}

function crossFieldIssues(raw: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const idempotency = asRecord(valueAt(raw, ['idempotency']));
  if (idempotency && 'ttl_hours' in idempotency && 'ttl' in idempotency) {
    issues.push({ path: 'idempotency.ttl', message: 'give ttl_hours or ttl, not both' });
  }
  const beat = idempotency?.heartbeat;
  if (idempotency && beat !== undefined && typeof beat !== 'boolean') {
    // As idempotent() checks it: a beat as long as the lease lets the lease end between beats.
    const beatMs = durationOrUndefined(beat);
    const leaseMs =
      idempotency.lease === undefined ? DEFAULT_LEASE_MS : durationOrUndefined(idempotency.lease);
    if (beatMs !== undefined && leaseMs !== undefined && beatMs >= leaseMs) {
      issues.push({
        path: 'idempotency.heartbeat',
        message: `must be shorter than the lease (${leaseMs} ms), or the lease ends between beats`,
      });
    }
  }
  if (idempotency && 'in_progress_wait' in idempotency && idempotency.on_in_progress !== 'wait') {
    issues.push({
      path: 'idempotency.in_progress_wait',
      message: 'only applies with on_in_progress: wait',
    });
  }
  const policy = asRecord(valueAt(raw, ['retry_policy']));
  if (policy) {
    for (const [a, b] of [
      ['base', 'initial_delay'],
      ['cap', 'max_delay'],
    ] as const) {
      if (a in policy && b in policy) {
        issues.push({
          path: `retry_policy.${b}`,
          message: `${b} is another name for ${a}: give one`,
        });
      }
    }
    const budget = asRecord(policy.budget);
    const type = budget?.type;
    if (budget && (type === 'token_bucket' || type === 'ratio')) {
      const other = type === 'ratio' ? BUDGET_FIELDS.token_bucket : BUDGET_FIELDS.ratio;
      for (const field of other) {
        if (field in budget) {
          issues.push({
            path: `retry_policy.budget.${field}`,
            message: `does not apply to a ${type} budget; its fields: type, ${BUDGET_FIELDS[type].join(', ')}`,
          });
        }
      }
    }
  }
  return issues;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.path}\u0000${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
