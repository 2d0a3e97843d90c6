import { InvalidArgumentError } from '../errors.js';

/**
 * Canonical JSON of `value`, for fingerprints: the same data gives the same text whatever
 * the order in which its keys were inserted.
 *
 * - Object keys are sorted by UTF-16 code units (as JCS, RFC 8785, does); arrays keep order.
 * - Otherwise JSON semantics: `toJSON` is honoured (a Date becomes its ISO string);
 *   `undefined`, functions and symbols are left out of objects and become `null` in arrays;
 *   `NaN` and `±Infinity` become `null`; `-0` becomes `0`; a top-level `undefined` is `null`.
 * - Where JSON would lose data a fingerprint must see: a `bigint` is written as its digits
 *   (a JSON number), a `Map` as an array of `[key, value]` pairs and a `Set` as an array,
 *   both sorted by their canonical text, and a `Uint8Array` (also a Buffer) as
 *   `{"$bytes": "<base64>"}`.
 * - A circular reference throws {@link InvalidArgumentError} naming the path; the same
 *   object reached twice without a cycle is fine.
 *
 * This text is for hashing, not for storing: it does not round-trip (see the codec for that).
 */
export function canonicalJson(value: unknown): string {
  return write(value, '$', []) ?? 'null';
}

/** The canonical text of one value, or undefined where JSON leaves an object member out. */
function write(value: unknown, path: string, ancestors: object[]): string | undefined {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value === 0 ? 0 : value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      return writeObject(value as object, path, ancestors);
  }
}

function writeObject(value: object, path: string, ancestors: object[]): string | undefined {
  if (ancestors.includes(value)) {
    throw new InvalidArgumentError(`cannot fingerprint a circular structure (at ${path})`);
  }
  // Before toJSON: a Buffer and a Uint8Array of the same bytes fingerprint alike.
  if (value instanceof Uint8Array) {
    return `{"$bytes":${JSON.stringify(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'))}}`;
  }
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    ancestors.push(value);
    try {
      return write(toJSON.call(value), path, ancestors);
    } finally {
      ancestors.pop();
    }
  }

  ancestors.push(value);
  try {
    if (Array.isArray(value)) {
      const items: string[] = [];
      for (let i = 0; i < value.length; i++) {
        items.push(write(value[i], `${path}[${i}]`, ancestors) ?? 'null');
      }
      return `[${items.join(',')}]`;
    }
    if (value instanceof Map) {
      const pairs: string[] = [];
      let i = 0;
      for (const [k, v] of value) {
        const at = `${path}.<map entry ${i++}>`;
        pairs.push(`[${write(k, at, ancestors) ?? 'null'},${write(v, at, ancestors) ?? 'null'}]`);
      }
      return `[${pairs.sort().join(',')}]`;
    }
    if (value instanceof Set) {
      const items: string[] = [];
      let i = 0;
      for (const item of value) {
        items.push(write(item, `${path}.<set item ${i++}>`, ancestors) ?? 'null');
      }
      return `[${items.sort().join(',')}]`;
    }
    const members: string[] = [];
    for (const key of Object.keys(value).sort()) {
      const text = write((value as Record<string, unknown>)[key], `${path}.${key}`, ancestors);
      if (text !== undefined) members.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${members.join(',')}}`;
  } finally {
    ancestors.pop();
  }
}
