import { type MsgHdrs, headers as createHeaders } from '@nats-io/transport-node';
import type { HistoryHeaderCodec } from '../amqp/history-headers.js';
import type { Headers } from '../types.js';

/**
 * reprocess's own NATS headers. Everything under `Reprocess-` is reserved: it is stripped from
 * `Delivery.headers` and rewritten on every copy reprocess publishes. `Nats-*` headers are
 * JetStream's publish controls (`Nats-Msg-Id` deduplicates, `Nats-Expected-*` asserts): they
 * are not carried to the dead-letter stream or back, since replaying them would make the
 * stream drop or refuse the copy.
 */
export const NATS_PREFIX = 'Reprocess-';

/**
 * The identity of the message, kept across quarantine and redrive: the publisher's
 * `Nats-Msg-Id`, or `<stream>:<sequence>` when it had none. It is `Delivery.id`.
 */
export const MESSAGE_ID = `${NATS_PREFIX}Msg-Id`;

/** The subject the message was published to; a redrive publishes it back there. */
export const SUBJECT = `${NATS_PREFIX}Subject`;

/** JetStream's deduplication header. */
export const NATS_MSG_ID = 'Nats-Msg-Id';
const NATS_MSG_ID_LOWER = NATS_MSG_ID.toLowerCase();

/** History headers: free text is percent-encoded (NATS header values cannot hold line breaks). */
export const NATS_HISTORY_CODEC: HistoryHeaderCodec = {
  prefix: NATS_PREFIX,
  // encodeURIComponent throws on a lone surrogate, which an error message may hold.
  escape: (text) =>
    encodeURIComponent(
      text.replace(
        /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g,
        '\uFFFD',
      ),
    ),
  unescape: (text) => {
    try {
      return decodeURIComponent(text);
    } catch {
      return text;
    }
  },
};

const PREFIX_LOWER = NATS_PREFIX.toLowerCase();

function isOurs(name: string): boolean {
  return (
    name.length >= PREFIX_LOWER.length &&
    name.slice(0, PREFIX_LOWER.length).toLowerCase() === PREFIX_LOWER
  );
}

function isControl(name: string): boolean {
  return name.toLowerCase().startsWith('nats-');
}

/** The publisher's headers, as a delivery shows them (no `Reprocess-*`, no `Nats-Msg-Id`). */
export function deliveryHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  // One pass over the decoded header map (this runs for every delivery).
  for (const [name, values] of h) {
    if (isOurs(name) || name.toLowerCase() === NATS_MSG_ID_LOWER) continue;
    out[name] = values.length === 1 ? (values[0] as string) : values.join(', ');
  }
  return out;
}

/** A new header set with the publisher's own headers (repeats kept), plus `extra`. */
export function carryHeaders(h: MsgHdrs | undefined, extra: Headers): MsgHdrs {
  const out = createHeaders();
  if (h) {
    for (const name of h.keys()) {
      if (isOurs(name) || isControl(name)) continue;
      for (const value of h.values(name)) out.append(name, value);
    }
  }
  for (const [name, value] of Object.entries(extra)) out.set(name, value);
  return out;
}

/** `Reprocess-*` headers only (the history and the message id), as strings. */
export function ourHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const name of h.keys()) if (isOurs(name)) out[name] = h.values(name).join(', ');
  return out;
}

/** The publisher's headers of a stored dead-letter message (neither ours nor JetStream's). */
export function publisherHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const name of h.keys()) {
    if (!isOurs(name) && !isControl(name)) out[name] = h.values(name).join(', ');
  }
  return out;
}
