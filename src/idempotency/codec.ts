import { RecordCorruptError, ResultNotStorableError } from '../errors.js';
import { quoteJson } from './json-text.js';
import type { Codec } from './types.js';

/**
 * The default result codec: JSON, with tagged values for what JSON would lose.
 *
 * Kept faithfully: `null`, booleans, strings, numbers including `-0`, `NaN` and `±Infinity`,
 * `bigint`, `undefined` (as an object member, an array item or the whole value), `Date`
 * (invalid dates too), `Map`, `Set`, `Buffer` (decoded as a Buffer), `Uint8Array`, arrays
 * (holes come back as `undefined`) and plain objects (a null-prototype object comes back
 * with `Object.prototype`). A tagged value is `{"$t": tag, "v": payload}`; a plain object
 * that has its own `$t` member is wrapped as `{"$t": "obj", "v": {...}}`, so no user data is
 * ever mistaken for a tag.
 *
 * Refused, with {@link ResultNotStorableError} (code `RESULT_NOT_STORABLE`) naming the path:
 * circular structures, functions, symbols, symbol-keyed members, and instances of any other
 * class (errors, class instances, `RegExp`, other typed arrays, promises...), because they
 * cannot come back as what they were. Return plain data, or pass your own codec.
 *
 * An object reached twice without a cycle is stored twice: identity is not kept.
 * `decode` throws {@link RecordCorruptError} on text it did not write.
 */
export function createDefaultCodec(): Codec {
  return {
    encode(value: unknown): string {
      try {
        return encodeValue(value, []);
      } catch (error) {
        if (error instanceof UnstorableAt) {
          throw new ResultNotStorableError(
            `cannot store ${error.what} (at ${formatPath(error.path)}); return plain data or pass a codec that handles it`,
          );
        }
        throw error;
      }
    },
    decode(text: string): unknown {
      if (typeof text !== 'string') {
        throw new RecordCorruptError(`stored value is not text (got ${typeof text})`);
      }
      let tree: unknown;
      try {
        tree = JSON.parse(text);
      } catch (error) {
        throw new RecordCorruptError('stored value is not valid JSON', error);
      }
      // Without a tag anywhere the parsed JSON is already the value. A "$t" that only
      // appears inside a string is escaped (\"$t\") and cannot match.
      if (!text.includes('"$t"')) return tree;
      return decodeValue(tree, '$');
    },
  };
}

/** The default codec (see {@link createDefaultCodec}). */
export const defaultCodec: Codec = createDefaultCodec();

const TAG = '$t';

/*
 * The encoder writes the stored text directly, in one walk: it is exactly what
 * JSON.stringify gives for a tree in which every value JSON would lose is replaced by its
 * tag, `{"$t": tag}` or `{"$t": tag, "v": payload}` (the format above), and members keep
 * their order. Building that tree and then stringifying it cost twice the time and all the
 * garbage of the tree.
 */
const UNDEFINED = '{"$t":"undef"}';
const NAN = '{"$t":"num","v":"NaN"}';
const INFINITY = '{"$t":"num","v":"Infinity"}';
const MINUS_INFINITY = '{"$t":"num","v":"-Infinity"}';
const MINUS_ZERO = '{"$t":"num","v":"-0"}';
const INVALID_DATE = '{"$t":"date","v":null}';

/**
 * Thrown inside the walk at a value that cannot be stored; each level it passes on the way
 * out adds its segment to `path` (an array index, or a member name, also `<map entry i>`).
 * The path is thus built only for an error message, and the walk keeps no path of its own:
 * pushing and popping a segment for every member cost a good part of encoding a small result.
 */
class UnstorableAt {
  readonly path: Array<string | number> = [];
  constructor(readonly what: string) {}
}

function notStorable(what: string): never {
  throw new UnstorableAt(what);
}

/** `$.a[0].<map entry 1>` from raw path segments. */
function formatPath(path: ReadonlyArray<string | number>): string {
  return `$${path.map((s) => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('')}`;
}

/** Encodes `value` one level down, at `segment`. */
function child(value: unknown, segment: string | number, ancestors: object[]): string {
  try {
    return encodeValue(value, ancestors);
  } catch (error) {
    if (error instanceof UnstorableAt) error.path.unshift(segment);
    throw error;
  }
}

/** The stored text of `value`; `ancestors`: the objects above it. */
function encodeValue(value: unknown, ancestors: object[]): string {
  switch (typeof value) {
    case 'string':
      return quoteJson(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      // A finite number is written as JSON writes it (Number#toString).
      if (value === 0) return Object.is(value, -0) ? MINUS_ZERO : '0';
      if (Number.isFinite(value)) return String(value);
      if (Number.isNaN(value)) return NAN;
      return value > 0 ? INFINITY : MINUS_INFINITY;
    case 'undefined':
      return UNDEFINED;
    case 'bigint':
      return `{"$t":"bigint","v":"${value.toString()}"}`;
    case 'function':
      return notStorable(`a function${value.name ? ` (${value.name})` : ''}`);
    case 'symbol':
      return notStorable('a symbol');
  }
  if (value === null) return 'null';
  const object = value as object;
  if (ancestors.includes(object)) return notStorable('a circular structure');
  const proto: unknown = Object.getPrototypeOf(object);
  // The common case first; no other branch below takes an object of these prototypes.
  if (proto === Object.prototype || proto === null) {
    ancestors.push(object);
    try {
      return encodePlainObject(object, ancestors);
    } finally {
      ancestors.pop();
    }
  }

  if (proto === Date.prototype) {
    const time = (object as Date).getTime();
    return Number.isNaN(time) ? INVALID_DATE : `{"$t":"date","v":${String(time)}}`;
  }
  if (Buffer.isBuffer(object)) return `{"$t":"buffer","v":"${object.toString('base64')}"}`;
  if (proto === Uint8Array.prototype) {
    const bytes = object as Uint8Array;
    const base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
    return `{"$t":"bytes","v":"${base64}"}`;
  }

  ancestors.push(object);
  try {
    if (Array.isArray(object) && proto === Array.prototype) {
      // Holes are read as undefined, as JSON.stringify of the tree saw them.
      let text = '[';
      for (let i = 0; i < object.length; i++) {
        if (i > 0) text += ',';
        text += child(object[i], i, ancestors);
      }
      return `${text}]`;
    }
    if (proto === Map.prototype) {
      let text = '{"$t":"map","v":[';
      let i = 0;
      for (const [k, v] of object as Map<unknown, unknown>) {
        const at = `<map entry ${i}>`;
        if (i++ > 0) text += ',';
        const key = child(k, at, ancestors);
        text += `[${key},${child(v, at, ancestors)}]`;
      }
      return `${text}]}`;
    }
    if (proto === Set.prototype) {
      let text = '{"$t":"set","v":[';
      let i = 0;
      for (const item of object as Set<unknown>) {
        if (i > 0) text += ',';
        text += child(item, `<set item ${i++}>`, ancestors);
      }
      return `${text}]}`;
    }
    return notStorable(describeInstance(object));
  } finally {
    ancestors.pop();
  }
}

/** A plain (or null-prototype) object's members, in order; `$t` among them escapes the object. */
function encodePlainObject(object: object, ancestors: object[]): string {
  for (const symbol of Object.getOwnPropertySymbols(object)) {
    if (Object.prototype.propertyIsEnumerable.call(object, symbol)) {
      notStorable(`a symbol-keyed member (${String(symbol)})`);
    }
  }
  let text = '{';
  let escaped = false;
  for (const key of Object.keys(object)) {
    if (key === TAG) escaped = true;
    if (text.length > 1) text += ',';
    const member = child((object as Record<string, unknown>)[key], key, ancestors);
    text += `${quoteJson(key)}:${member}`;
  }
  return escaped ? `{"$t":"obj","v":${text}}}` : `${text}}`;
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

function corrupt(path: string, what: string): never {
  throw new RecordCorruptError(`stored value is corrupt at ${path}: ${what}`);
}

function decodeValue(tree: unknown, path: string): unknown {
  if (tree === null || typeof tree !== 'object') return tree;
  if (Array.isArray(tree)) return tree.map((item, i) => decodeValue(item, `${path}[${i}]`));
  const node = tree as Record<string, unknown>;
  if (!Object.hasOwn(node, TAG)) return decodeObject(node, path);

  const tag = node[TAG];
  const payload = node.v;
  switch (tag) {
    case 'undef':
      return undefined;
    case 'num':
      switch (payload) {
        case 'NaN':
          return Number.NaN;
        case 'Infinity':
          return Number.POSITIVE_INFINITY;
        case '-Infinity':
          return Number.NEGATIVE_INFINITY;
        case '-0':
          return -0;
      }
      return corrupt(path, `unknown special number ${JSON.stringify(payload)}`);
    case 'bigint':
      if (typeof payload === 'string' && /^-?\d+$/.test(payload)) return BigInt(payload);
      return corrupt(path, 'bad bigint');
    case 'date':
      if (payload === null) return new Date(Number.NaN);
      if (Number.isInteger(payload) && Math.abs(payload as number) <= MAX_DATE_MS) {
        return new Date(payload as number);
      }
      return corrupt(path, 'bad date');
    case 'buffer':
      return fromBase64(payload) ?? corrupt(path, 'bad buffer');
    case 'bytes': {
      const bytes = fromBase64(payload);
      return bytes === undefined ? corrupt(path, 'bad bytes') : new Uint8Array(bytes);
    }
    case 'map':
      if (!Array.isArray(payload)) return corrupt(path, 'bad map');
      return new Map(
        payload.map((entry, i) => {
          if (!Array.isArray(entry) || entry.length !== 2) {
            return corrupt(`${path}.<map entry ${i}>`, 'bad map entry');
          }
          const at = `${path}.<map entry ${i}>`;
          return [decodeValue(entry[0], at), decodeValue(entry[1], at)] as const;
        }),
      );
    case 'set':
      if (!Array.isArray(payload)) return corrupt(path, 'bad set');
      return new Set(payload.map((item, i) => decodeValue(item, `${path}.<set item ${i}>`)));
    case 'obj':
      if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
        return corrupt(path, 'bad escaped object');
      }
      return decodeObject(payload as Record<string, unknown>, path);
  }
  return corrupt(path, `unknown tag ${JSON.stringify(tag)}`);
}

/** The largest time a Date holds (ECMAScript: ±8.64e15 ms). */
const MAX_DATE_MS = 8.64e15;
/**
 * The bytes of base64 exactly as `Buffer#toString('base64')` writes it, or undefined:
 * `Buffer.from` alone skips characters that are not base64 silently. Re-encoding to compare
 * is several times faster than a validating regular expression on a large payload.
 */
function fromBase64(payload: unknown): Buffer | undefined {
  if (typeof payload !== 'string') return undefined;
  const bytes = Buffer.from(payload, 'base64');
  return bytes.toString('base64') === payload ? bytes : undefined;
}

function decodeObject(node: Record<string, unknown>, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(node)) {
    setMember(out, key, decodeValue(node[key], `${path}.${key}`));
  }
  return out;
}
