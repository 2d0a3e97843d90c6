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

/** Nested tables deeper than this are counted as their JSON text, which bounds them well. */
const MAX_DEPTH = 64;

function tableBytes(table: object, depth: number): number {
  let size = 4; // the table's length
  for (const [key, value] of Object.entries(table)) {
    if (value === undefined) continue;
    size += 1 + Buffer.byteLength(key, 'utf8') + valueBytes(value, depth);
  }
  return size;
}

/** A field value with its type tag. */
function valueBytes(value: unknown, depth: number): number {
  if (typeof value === 'string') return 1 + 4 + Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number' || typeof value === 'bigint') return 1 + 8;
  if (typeof value === 'boolean') return 2;
  if (value === null || typeof value !== 'object') return 1;
  if (value instanceof Uint8Array) return 1 + 4 + value.byteLength;
  if (depth >= MAX_DEPTH) return 1 + 4 + Buffer.byteLength(safeJson(value), 'utf8');
  if (Array.isArray(value)) {
    let size = 1 + 4;
    for (const item of value) size += valueBytes(item, depth + 1);
    return size;
  }
  if (Object.hasOwn(value, '!')) {
    // A typed value ({ '!': 'timestamp', value }): its tag, then at most its widest form.
    const inner = (value as { value?: unknown }).value;
    return 1 + (typeof inner === 'string' ? 4 + Buffer.byteLength(inner, 'utf8') : 8);
  }
  return 1 + tableBytes(value, depth + 1);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '';
  }
}
