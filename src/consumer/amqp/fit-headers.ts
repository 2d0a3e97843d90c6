import { headOf } from '../../clip-text.js';
import { AMQP_PREFIX, PUBLISH_ID } from './amqp-headers.js';
import { MAX_HEADER_TABLE_BYTES, headerEntryBytes } from './header-table-size.js';

/** The header that names the publisher's headers a copy had to leave out. */
export const HEADERS_DROPPED = `${AMQP_PREFIX}headers-dropped`;

/** Longest list of left-out names kept in {@link HEADERS_DROPPED}; the rest are counted. */
const MAX_DROPPED_TEXT = 4096;
const ELLIPSIS = '…';
/**
 * What a copy's table may take: amqplib's bound less the header the confirm publisher adds to
 * every message it sends (its publish id: 8 characters, a dash and a sequence number).
 */
const ROOM = MAX_HEADER_TABLE_BYTES - headerEntryBytes(PUBLISH_ID, 'x'.repeat(32));

/**
 * The header table of a copy (a retry, or a quarantine), made to fit what amqplib can publish:
 * the publisher's headers (`original`) and ours (the hop count, or the history). A copy that
 * did not fit would be refused at every try, and the message would go round for ever.
 *
 * The room is amqplib's 64 KiB less the publish id the confirm publisher adds. In this
 * order, each only when still needed: the publisher's headers amqplib could not
 * encode as they came are left out; the error message (`messageName`, in `ours`) is cut; the
 * largest publisher headers are left out, one at a time. What was left out is named in
 * {@link HEADERS_DROPPED} (counted in the fit), and the message keeps as much as the room
 * left allows. Sizes are added up once and kept as a running total: linear in the headers.
 */
export function fitHeaders(
  original: Record<string, unknown>,
  ours: Record<string, string>,
  messageName?: string,
): Record<string, unknown> {
  const sizes = Object.keys(original).map((name) => ({
    name,
    bytes: headerEntryBytes(name, original[name]),
  }));
  const message = messageName === undefined ? undefined : ours[messageName];
  const messageEntry = (text: string) => headerEntryBytes(messageName as string, text);
  let oursBytes = 0;
  for (const [name, value] of Object.entries(ours)) oursBytes += headerEntryBytes(name, value);
  let keptBytes = 0;
  for (const { bytes } of sizes) keptBytes += bytes;
  if (4 + keptBytes + oursBytes <= ROOM) return { ...original, ...ours };

  const dropped: string[] = [];
  const droppedEntry = () =>
    dropped.length === 0 ? 0 : headerEntryBytes(HEADERS_DROPPED, droppedText(dropped));
  for (const { name, bytes } of sizes) {
    if (bytes !== Number.POSITIVE_INFINITY) continue;
    dropped.push(name);
  }
  keptBytes = 0;
  for (const { bytes } of sizes) if (bytes !== Number.POSITIVE_INFINITY) keptBytes += bytes;
  // Ours without the message's text: the least the table can hold.
  const oursAtLeast =
    message === undefined ? oursBytes : oursBytes - messageEntry(message) + messageEntry(ELLIPSIS);
  const largestFirst = sizes
    .filter(({ bytes }) => bytes !== Number.POSITIVE_INFINITY)
    .sort((a, b) => b.bytes - a.bytes);
  let next = 0;
  while (4 + keptBytes + oursAtLeast + droppedEntry() > ROOM) {
    const largest = largestFirst[next++];
    if (largest === undefined) break;
    dropped.push(largest.name);
    keptBytes -= largest.bytes;
  }

  const gone = new Set(dropped);
  const table: Record<string, unknown> = {};
  for (const name of Object.keys(original)) if (!gone.has(name)) table[name] = original[name];
  Object.assign(table, ours);
  if (message !== undefined && messageName !== undefined) {
    const room = ROOM - (4 + keptBytes + oursBytes - messageEntry(message));
    table[messageName] = longestFitting(message, room - droppedEntry(), messageEntry);
  }
  if (dropped.length > 0) table[HEADERS_DROPPED] = droppedText(dropped);
  return table;
}

/** `message`, or its longest head with an ellipsis, whose entry takes at most `room` bytes. */
function longestFitting(message: string, room: number, entry: (text: string) => number): string {
  if (entry(message) <= room) return message;
  let low = 0;
  let high = message.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (entry(`${headOf(message, mid)}${ELLIPSIS}`) <= room) low = mid;
    else high = mid - 1;
  }
  return `${headOf(message, low)}${ELLIPSIS}`;
}

/** The names left out, comma-separated, at most {@link MAX_DROPPED_TEXT} characters and a count. */
function droppedText(dropped: string[]): string {
  let text = '';
  for (let i = 0; i < dropped.length; i++) {
    const name = dropped[i] as string;
    const more = `${i === 0 ? '' : ','}${name}`;
    if (text.length + more.length > MAX_DROPPED_TEXT) {
      return `${text}${ELLIPSIS}+${dropped.length - i} more`;
    }
    text += more;
  }
  return text;
}
