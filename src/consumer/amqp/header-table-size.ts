/**
 * The most bytes amqplib encodes a message's header table into: it writes the table into a
 * fixed 64 KiB buffer and refuses to publish past it (RangeError "Encoded field table ...").
 */
export const MAX_HEADER_TABLE_BYTES = 65_536;

/**
 * The size of `headers` encoded as an AMQP field table, as amqplib 2.x writes it (its encoder
 * is not exported; src: lib/codec.js, encodeTable), or Infinity when amqplib would refuse a
 * value in it (a number it cannot write, a typed value that is malformed, a table nested
 * deeper than {@link MAX_DEPTH}).
 */
export function headerTableBytes(headers: Record<string, unknown>): number {
  let size = 4; // the table's length
  for (const [name, value] of Object.entries(headers)) size += headerEntryBytes(name, value);
  return size;
}

/** One member of a table: its name, its type tag and its value (0 when amqplib skips it). */
export function headerEntryBytes(name: string, value: unknown, depth = 0): number {
  if (value === undefined) return 0;
  return 1 + Buffer.byteLength(name, 'utf8') + valueBytes(value, depth);
}

/** Nesting past which a value is taken as too large (amqplib recurses, and so would this). */
const MAX_DEPTH = 512;
const INT64_MIN = -(2 ** 63);

/** A field value with its type tag, as amqplib's encodeFieldValue writes it. */
function valueBytes(value: unknown, depth: number): number {
  if (typeof value === 'string') return 1 + 4 + Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number') return 1 + numberBytes(value);
  if (typeof value === 'boolean') return 2;
  if (value === null) return 1;
  if (typeof value !== 'object') return Number.POSITIVE_INFINITY; // a bigint, a function
  if (Buffer.isBuffer(value)) return 1 + 4 + value.byteLength;
  if (depth >= MAX_DEPTH) return Number.POSITIVE_INFINITY;
  if (Array.isArray(value)) {
    let size = 1 + 4;
    for (const item of value) size += valueBytes(item, depth + 1);
    return size;
  }
  // A table with a member named "!" is a typed value to amqplib's encoder: it decodes
  // timestamps and decimals so ({ '!': 'timestamp', value }). Any other such table (another
  // client's headers) may be encoded as something else, or refused: taken as too large.
  if (Object.hasOwn(value, '!')) return typedBytes(value as { '!': unknown; value?: unknown });
  let size = 1 + 4;
  for (const [name, item] of Object.entries(value)) size += headerEntryBytes(name, item, depth + 1);
  return size;
}

/**
 * A JS number as amqplib writes it: a double for a fraction below 2^50 or anything from 2^63
 * on, else the narrowest signed integer. What is left and not an integer in int64 (NaN,
 * -Infinity, a fraction from 2^50 on, below -2^63) makes its BigInt conversion throw.
 */
function numberBytes(n: number): number {
  if (n >= 2 ** 63 || (Math.abs(n) < 2 ** 50 && Math.floor(n) !== n)) return 8;
  if (!Number.isInteger(n) || n < INT64_MIN) return Number.POSITIVE_INFINITY;
  if (n >= -128 && n < 128) return 1;
  if (n >= -0x8000 && n < 0x8000) return 2;
  if (n >= -0x80000000 && n < 0x80000000) return 4;
  return 8;
}

function typedBytes(typed: { '!': unknown; value?: unknown }): number {
  const { value } = typed;
  if (typed['!'] === 'timestamp' && typeof value === 'number' && Number.isInteger(value)) {
    return value >= 0 && value < 2 ** 64 ? 1 + 8 : Number.POSITIVE_INFINITY;
  }
  if (typed['!'] === 'decimal' && typeof value === 'object' && value !== null) {
    const { places, digits } = value as { places?: unknown; digits?: unknown };
    const ok =
      typeof places === 'number' &&
      Number.isInteger(places) &&
      places >= 0 &&
      places < 256 &&
      typeof digits === 'number' &&
      Number.isInteger(digits) &&
      digits >= 0 &&
      digits < 2 ** 32;
    return ok ? 1 + 1 + 4 : Number.POSITIVE_INFINITY;
  }
  return Number.POSITIVE_INFINITY;
}
