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
  return write(value, { ancestors: [], segments: [] }) ?? 'null';
}

/** Where the walk is: the objects above the current value and the path to it. */
interface Walk {
  ancestors: object[];
  /** Path segments (`.key`, `[0]`), joined only for an error message. */
  segments: string[];
}

/** The canonical text of one value, or undefined where JSON leaves an object member out. */
function write(value: unknown, walk: Walk): string | undefined {
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
      return writeObject(value as object, walk);
  }
}

/** Writes `value` one level down, at `segment`. */
function child(value: unknown, segment: string, walk: Walk): string | undefined {
  walk.segments.push(segment);
  const text = write(value, walk);
  walk.segments.pop();
  return text;
}

function writeObject(value: object, walk: Walk): string | undefined {
  if (walk.ancestors.includes(value)) {
    throw new InvalidArgumentError(
      `cannot fingerprint a circular structure (at $${walk.segments.join('')})`,
    );
  }
  // Before toJSON: a Buffer and a Uint8Array of the same bytes fingerprint alike.
  if (value instanceof Uint8Array) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return `{"$bytes":${JSON.stringify(bytes.toString('base64'))}}`;
  }

  walk.ancestors.push(value);
  try {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return write(toJSON.call(value), walk);
    if (Array.isArray(value)) {
      const items: string[] = [];
      for (let i = 0; i < value.length; i++) {
        items.push(child(value[i], `[${i}]`, walk) ?? 'null');
      }
      return `[${items.join(',')}]`;
    }
    if (value instanceof Map) {
      const pairs: string[] = [];
      let i = 0;
      for (const [k, v] of value) {
        const at = `.<map entry ${i++}>`;
        pairs.push(`[${child(k, at, walk) ?? 'null'},${child(v, at, walk) ?? 'null'}]`);
      }
      return `[${pairs.sort().join(',')}]`;
    }
    if (value instanceof Set) {
      const items: string[] = [];
      let i = 0;
      for (const item of value) items.push(child(item, `.<set item ${i++}>`, walk) ?? 'null');
      return `[${items.sort().join(',')}]`;
    }
    const members: string[] = [];
    for (const key of Object.keys(value).sort()) {
      const text = child((value as Record<string, unknown>)[key], `.${key}`, walk);
      if (text !== undefined) members.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${members.join(',')}}`;
  } finally {
    walk.ancestors.pop();
  }
}
