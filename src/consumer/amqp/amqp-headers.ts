import type { Headers } from '../types.js';

/**
 * reprocess's own AMQP headers. Everything under `x-reprocess-` is reserved: it is stripped
 * from `Delivery.headers` and rewritten on every copy reprocess publishes.
 */
export const AMQP_PREFIX = 'x-reprocess-';

/** Deliveries that happened before this copy was published (the delay hop resets x-delivery-count). */
export const HOP_DELIVERIES = `${AMQP_PREFIX}deliveries`;
/** Epoch ms of the original publication, carried across delay hops. */
export const HOP_PUBLISHED_AT = `${AMQP_PREFIX}published-at`;
/** Correlates a mandatory publish with a broker `basic.return` (unroutable). */
export const PUBLISH_ID = `${AMQP_PREFIX}publish-id`;

/** Headers RabbitMQ adds itself; they describe one queue's life, not the message. */
const BROKER_HEADERS: ReadonlySet<string> = new Set([
  'x-death',
  'x-delivery-count',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
]);

/** Whether `name` is a header that belongs to RabbitMQ or to reprocess, not to the publisher. */
export function isInternalHeader(name: string): boolean {
  return BROKER_HEADERS.has(name) || name.startsWith(AMQP_PREFIX);
}

/**
 * The publisher's headers exactly as amqplib decoded them (types kept, so a copy republishes
 * them untouched), without RabbitMQ's and reprocess's own.
 */
export function originalRawHeaders(
  raw: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!raw) return out;
  for (const [name, value] of Object.entries(raw)) {
    if (!isInternalHeader(name)) out[name] = value;
  }
  return out;
}

/**
 * The publisher's headers as the port's strings, in one pass:
 * `toStringHeaders(originalRawHeaders(raw))` without the intermediate object.
 */
export function publisherStringHeaders(raw: Record<string, unknown> | undefined): Headers {
  const out: Headers = {};
  if (!raw) return out;
  for (const name in raw) {
    if (isInternalHeader(name)) continue;
    const text = headerText(raw[name]);
    if (text !== undefined) out[name] = text;
  }
  return out;
}

/** reprocess's own headers of a delivery, as strings. */
export function internalHeaders(raw: Record<string, unknown> | undefined): Headers {
  const out: Headers = {};
  if (!raw) return out;
  for (const [name, value] of Object.entries(raw)) {
    if (name.startsWith(AMQP_PREFIX)) {
      const text = headerText(value);
      if (text !== undefined) out[name] = text;
    }
  }
  return out;
}

/** AMQP header values (strings, numbers, byte arrays, tables) as the port's strings. */
export function toStringHeaders(raw: Record<string, unknown>): Headers {
  const out: Headers = {};
  for (const [name, value] of Object.entries(raw)) {
    const text = headerText(value);
    if (text !== undefined) out[name] = text;
  }
  return out;
}

function headerText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  const typed = typedValueText(value);
  if (typed !== undefined) return typed;
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
}

/**
 * amqplib decodes an AMQP timestamp as `{'!': 'timestamp', value: seconds}` and a decimal as
 * `{'!': 'decimal', value: {places, digits}}`: their text is the number the publisher sent
 * (`1700000000`, `12.50`), not that envelope. Undefined for anything else.
 */
function typedValueText(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, '!')) return undefined;
  const { '!': type, value: inner } = value as { '!': unknown; value: unknown };
  if (type === 'timestamp' && typeof inner === 'number') return String(inner);
  if (type === 'decimal' && typeof inner === 'object' && inner !== null) {
    const { places, digits } = inner as { places?: unknown; digits?: unknown };
    if (
      typeof places === 'number' &&
      typeof digits === 'number' &&
      Number.isInteger(places) &&
      places >= 0 &&
      places <= 255 &&
      Number.isInteger(digits)
    ) {
      if (places === 0) return String(digits);
      const text = String(Math.abs(digits)).padStart(places + 1, '0');
      const sign = digits < 0 ? '-' : '';
      return `${sign}${text.slice(0, -places)}.${text.slice(-places)}`;
    }
  }
  return undefined;
}

/** A header value as a whole number, or undefined. */
export function headerInt(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(n) ? Math.trunc(n) : undefined;
}
