/**
 * The most bytes amqplib encodes a message's header table into: it writes the table into a
 * fixed 64 KiB buffer and refuses to publish past it (RangeError "Encoded field table ...").
 */
export const MAX_HEADER_TABLE_BYTES = 65_536;

/**
 * The size of `headers` encoded as an AMQP field table, as amqplib writes it, or a little
 * more (a number is counted at its widest, 9 bytes): enough to tell whether a table fits
 * {@link MAX_HEADER_TABLE_BYTES}. (amqplib's own encoder is not exported.)
 */
export function headerTableBytes(headers: Record<string, unknown>): number {
  return tableBytes(headers, 0);
}

/**
 * Nesting past which a value is taken as too large: a header nested this deep is left out of a
 * copy rather than measured (amqplib could not encode it anyway past a few thousand levels).
 */
const MAX_DEPTH = 512;

function tableBytes(table: object, depth: number): number {
  let size = 4; // the table's length
  for (const [key, value] of Object.entries(table)) {
    if (value === undefined) continue;
    size += 1 + Buffer.byteLength(key, 'utf8') + valueBytes(value, depth);
  }
  return size;
}

/** A field value with its type tag; Infinity for one amqplib may not encode as it came. */
function valueBytes(value: unknown, depth: number): number {
  if (typeof value === 'string') return 1 + 4 + Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number' || typeof value === 'bigint') return 1 + 8;
  if (typeof value === 'boolean') return 2;
  if (value === null || typeof value !== 'object') return 1;
  if (value instanceof Uint8Array) return 1 + 4 + value.byteLength;
  if (depth >= MAX_DEPTH) return Number.POSITIVE_INFINITY;
  if (Array.isArray(value)) {
    let size = 1 + 4;
    for (const item of value) size += valueBytes(item, depth + 1);
    return size;
  }
  // A table with a member named "!" is read by amqplib's encoder as a typed value: amqplib
  // decodes timestamps and decimals so ({ '!': 'timestamp', value }). Any other such table
  // (another client's headers) may be encoded as something else, or refused: counted as too
  // large, so that it is left out.
  if (Object.hasOwn(value, '!')) {
    const typed = value as { '!': unknown; value?: unknown };
    if (typed['!'] === 'timestamp' && typeof typed.value === 'number') return 1 + 8;
    if (typed['!'] === 'decimal' && typeof typed.value === 'object') return 1 + 1 + 4;
    return Number.POSITIVE_INFINITY;
  }
  return 1 + tableBytes(value, depth + 1);
}
