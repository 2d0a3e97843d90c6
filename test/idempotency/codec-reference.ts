/**
 * The default codec's encoder as it was before it wrote its text directly (a tree of tagged
 * values, then JSON.stringify), kept as the reference the new one must match character for
 * character: stored results stay readable and byte-identical.
 */
import { ResultNotStorableError } from '../../src/errors.js';

/** The text the tree encoder wrote for `value` (it throws as it threw). */
export function referenceEncode(value: unknown): string {
  return JSON.stringify(encodeValue(value, { ancestors: [], path: [] }));
}

type Tree = null | boolean | number | string | Tree[] | { [key: string]: Tree };

const TAG = '$t';

function tagged(tag: string, payload?: Tree): Tree {
  return payload === undefined ? { [TAG]: tag } : { [TAG]: tag, v: payload };
}

/** Where the walk is: the objects above the current value and the path to it. */
interface Walk {
  ancestors: object[];
  /**
   * Path segments: an array index, or a member name (also `<map entry i>`). Kept raw and
   * turned into `$.a[0]` only for an error message: formatting a segment for every member
   * cost about a third of encoding a small result.
   */
  path: Array<string | number>;
}

function notStorable(walk: Walk, what: string): never {
  throw new ResultNotStorableError(
    `cannot store ${what} (at ${formatPath(walk.path)}); return plain data or pass a codec that handles it`,
  );
}

/** `$.a[0].<map entry 1>` from raw path segments. */
function formatPath(path: ReadonlyArray<string | number>): string {
  return `$${path.map((s) => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('')}`;
}

/** Encodes `value` one level down, at `segment`. */
function child(value: unknown, segment: string | number, walk: Walk): Tree {
  walk.path.push(segment);
  const tree = encodeValue(value, walk);
  walk.path.pop();
  return tree;
}

function encodeValue(value: unknown, walk: Walk): Tree {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (Number.isNaN(value)) return tagged('num', 'NaN');
      if (value === Number.POSITIVE_INFINITY) return tagged('num', 'Infinity');
      if (value === Number.NEGATIVE_INFINITY) return tagged('num', '-Infinity');
      if (Object.is(value, -0)) return tagged('num', '-0');
      return value;
    case 'undefined':
      return tagged('undef');
    case 'bigint':
      return tagged('bigint', value.toString());
    case 'function':
      return notStorable(walk, `a function${value.name ? ` (${value.name})` : ''}`);
    case 'symbol':
      return notStorable(walk, 'a symbol');
  }
  if (value === null) return null;
  const object = value as object;
  if (walk.ancestors.includes(object)) return notStorable(walk, 'a circular structure');
  const proto: unknown = Object.getPrototypeOf(object);

  if (proto === Date.prototype) {
    const time = (object as Date).getTime();
    return tagged('date', Number.isNaN(time) ? null : time);
  }
  if (Buffer.isBuffer(object)) return tagged('buffer', object.toString('base64'));
  if (proto === Uint8Array.prototype) {
    const bytes = object as Uint8Array;
    return tagged(
      'bytes',
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
    );
  }

  walk.ancestors.push(object);
  try {
    if (Array.isArray(object) && proto === Array.prototype) {
      const items: Tree[] = new Array(object.length);
      for (let i = 0; i < object.length; i++) {
        items[i] = child(object[i], i, walk);
      }
      return items;
    }
    if (proto === Map.prototype) {
      const entries: Tree[] = [];
      let i = 0;
      for (const [k, v] of object as Map<unknown, unknown>) {
        const at = `<map entry ${i++}>`;
        entries.push([child(k, at, walk), child(v, at, walk)]);
      }
      return tagged('map', entries);
    }
    if (proto === Set.prototype) {
      const items: Tree[] = [];
      let i = 0;
      for (const item of object as Set<unknown>) {
        items.push(child(item, `<set item ${i++}>`, walk));
      }
      return tagged('set', items);
    }
    if (proto === Object.prototype || proto === null) {
      for (const symbol of Object.getOwnPropertySymbols(object)) {
        if (Object.prototype.propertyIsEnumerable.call(object, symbol)) {
          notStorable(walk, `a symbol-keyed member (${String(symbol)})`);
        }
      }
      const out: { [key: string]: Tree } = {};
      let escaped = false;
      for (const key of Object.keys(object)) {
        if (key === TAG) escaped = true;
        setMember(out, key, child((object as Record<string, unknown>)[key], key, walk));
      }
      return escaped ? tagged('obj', out) : out;
    }
    return notStorable(walk, describeInstance(object));
  } finally {
    walk.ancestors.pop();
  }
}

function describeInstance(object: object): string {
  if (object instanceof Error) return `an error (${object.name})`;
  const name = (object as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== ''
    ? `an instance of ${name}`
    : 'an object with a custom prototype';
}

/** Sets a member without ever invoking the `__proto__` setter. */
function setMember<T>(target: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    target[key] = value;
  }
}
