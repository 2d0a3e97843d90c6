import type { Headers, QuarantineHistory } from '../types.js';
import { headOf } from '../../clip-text.js';

/**
 * The quarantine history as message headers, so a dead-letter message carries its own story
 * and any broker tool can read it. Broker-neutral: RabbitMQ uses the prefix `x-reprocess-`,
 * NATS `Reprocess-` (NATS header values cannot hold line breaks, so it passes an escape).
 *
 * | field | header (after the prefix) | value |
 * | --- | --- | --- |
 * | attempts | `attempts` | decimal |
 * | firstFailureAt, lastFailureAt, quarantinedAt | `first-failure-at`, `last-failure-at`, `quarantined-at` | epoch ms, decimal |
 * | lastError | `error-name`, `error-code` (when set), `error-message` | text (message cut at 2000 characters) |
 * | reason | `reason` | one of QuarantineHistory's reasons |
 * | source | `source` | queue or subject name |
 * | idempotencyKey | `idempotency-key` (when set) | text |
 */
export interface HistoryHeaderCodec {
  /** Header name prefix that marks reprocess's own headers. */
  prefix: string;
  /** Makes free text safe for the broker's header values (identity by default). */
  escape?: (text: string) => string;
  unescape?: (text: string) => string;
}

/** Error messages longer than this are cut: broker header tables are small (64 KiB in amqplib). */
export const MAX_ERROR_MESSAGE_LENGTH = 2000;

const REASONS: ReadonlySet<string> = new Set([
  'non_retryable',
  'attempts_exhausted',
  'max_age',
  'poison',
  'key_missing',
]);

const identity = (text: string) => text;

/** The history as headers (names carry the codec's prefix). */
export function encodeHistory(history: QuarantineHistory, codec: HistoryHeaderCodec): Headers {
  const p = codec.prefix;
  const esc = codec.escape ?? identity;
  const message =
    history.lastError.message.length > MAX_ERROR_MESSAGE_LENGTH
      ? `${headOf(history.lastError.message, MAX_ERROR_MESSAGE_LENGTH)}…`
      : history.lastError.message;
  const out: Headers = {
    [`${p}attempts`]: String(history.attempts),
    [`${p}first-failure-at`]: String(history.firstFailureAt),
    [`${p}last-failure-at`]: String(history.lastFailureAt),
    [`${p}error-name`]: esc(history.lastError.name),
    [`${p}error-message`]: esc(message),
    [`${p}reason`]: history.reason,
    [`${p}source`]: esc(history.source),
    [`${p}quarantined-at`]: String(history.quarantinedAt),
  };
  if (history.lastError.code !== undefined) out[`${p}error-code`] = esc(history.lastError.code);
  if (history.idempotencyKey !== undefined) {
    out[`${p}idempotency-key`] = esc(history.idempotencyKey);
  }
  return out;
}

/**
 * Reads the history back. A message that reached the dead-letter destination some other way
 * (published there by hand, dead-lettered by the broker) has no history: it gets one that
 * says so, with `fallbackSource` as where a redrive sends it.
 */
export function decodeHistory(
  headers: Headers,
  codec: HistoryHeaderCodec,
  fallbackSource: string,
): QuarantineHistory {
  const p = codec.prefix;
  const un = codec.unescape ?? identity;
  const text = (name: string): string | undefined => {
    const value = headers[`${p}${name}`];
    return value === undefined ? undefined : un(value);
  };
  const int = (name: string): number => {
    const value = Number(headers[`${p}${name}`]);
    return Number.isFinite(value) ? value : 0;
  };
  const reason = headers[`${p}reason`];
  if (reason === undefined) {
    return {
      attempts: 0,
      firstFailureAt: 0,
      lastFailureAt: 0,
      lastError: { name: 'Unknown', message: 'no reprocess history on this message' },
      reason: 'poison',
      source: fallbackSource,
      quarantinedAt: 0,
    };
  }
  const code = text('error-code');
  const key = text('idempotency-key');
  const history: QuarantineHistory = {
    attempts: int('attempts'),
    firstFailureAt: int('first-failure-at'),
    lastFailureAt: int('last-failure-at'),
    lastError: {
      name: text('error-name') ?? 'Error',
      message: text('error-message') ?? '',
      ...(code === undefined ? {} : { code }),
    },
    reason: (REASONS.has(reason) ? reason : 'poison') as QuarantineHistory['reason'],
    source: text('source') || fallbackSource,
    quarantinedAt: int('quarantined-at'),
  };
  if (key !== undefined) history.idempotencyKey = key;
  return history;
}
