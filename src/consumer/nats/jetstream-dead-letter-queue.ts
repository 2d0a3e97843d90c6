import {
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type Clock, sleep, systemClock } from '../../clock.js';
import { decodeHistory } from '../amqp/history-headers.js';
import { checkQuarantineFilter, matchesFilter } from '../quarantine-filter.js';
import type { DeadLetterQueue, QuarantineFilter, QuarantinedMessage } from '../types.js';
import { JetStreamPublishError } from './jetstream-errors.js';
import {
  MESSAGE_ID,
  NATS_HISTORY_CODEC,
  SUBJECT,
  carryHeaders,
  ourHeaders,
  publisherHeaders,
} from './jetstream-headers.js';
import { deadLetterSubjectOf, isNotFound } from './jetstream-topology.js';
import {
  type NatsConnectionOptions,
  checkJetStreamName,
  checkNatsConnectionOptions,
  openNatsConnection,
} from './nats-connection.js';

/** Options of {@link createJetStreamDeadLetterQueue} besides the connection. */
export interface JetStreamDeadLetterQueueSettings {
  /** The source stream whose quarantine this is. */
  stream: string;
  /** The dead-letter stream (default `<stream>_DLQ`, as {@link createJetStreamSource} names it). */
  deadLetterStream?: string;
  /** Clock of quarantine ages and of the redrive rate limit. */
  clock?: Clock;
}

/** Options of {@link createJetStreamDeadLetterQueue}: servers or a connection, and the stream. */
export type JetStreamDeadLetterQueueOptions = NatsConnectionOptions &
  JetStreamDeadLetterQueueSettings;

/** A JetStream {@link DeadLetterQueue}; `id` of a listed message is its dead-letter stream sequence. */
export interface JetStreamDeadLetterQueue extends DeadLetterQueue {
  readonly stream: string;
  readonly deadLetterStream: string;
  /** Messages in the dead-letter stream. */
  count(): Promise<number>;
  /** Closes the connection it opened itself. */
  close(): Promise<void>;
}

/**
 * The dead-letter stream of a JetStream source. Listing reads the stream with an ordered
 * consumer (nothing is taken or changed). A redrive republishes each match to the subject it
 * was first published to (`Reprocess-Subject`, kept at quarantine) with the publisher's headers and its `Reprocess-Msg-Id` (so `Delivery.id`, and
 * a key derived from it, stays the same) and the `Nats-Msg-Id` `rp-r:<dlq stream>:<sequence>`
 * (a repeated redrive of the same message within the duplicate window is dropped by
 * JetStream), and deletes it from the dead-letter stream only after the publish ack.
 */
export function createJetStreamDeadLetterQueue(
  options: JetStreamDeadLetterQueueOptions,
): JetStreamDeadLetterQueue {
  checkNatsConnectionOptions(options, 'createJetStreamDeadLetterQueue');
  checkJetStreamName(options.stream, 'stream');
  const deadLetterStream = options.deadLetterStream ?? `${options.stream}_DLQ`;
  checkJetStreamName(deadLetterStream, 'deadLetterStream');
  const clock = options.clock ?? systemClock;
  // This source's messages only: a dead-letter stream may be shared by several sources, and
  // one source's list or redrive must not take another's.
  const ownPrefix = `${deadLetterSubjectOf(options.stream)}.`;
  const ownSubjects = `${ownPrefix}>`;
  let opened:
    | Promise<{
        connection: NatsConnection;
        owned: boolean;
        js: JetStreamClient;
        jsm: JetStreamManager;
      }>
    | undefined;

  function open() {
    opened ??= openNatsConnection(options, `reprocess-dlq:${options.stream}`).then(
      async ({ connection, owned }) => ({
        connection,
        owned,
        js: jetstream(connection),
        jsm: await jetstreamManager(connection),
      }),
    );
    return opened;
  }

  /** The last closing: a close() while one runs waits for it. */
  let closing: Promise<void> | undefined;
  async function shut(current: NonNullable<typeof opened>): Promise<void> {
    const resolved = await current.catch(() => undefined);
    if (resolved?.owned) await resolved.connection.close().catch(() => {});
  }

  function read(message: JsMsg): QuarantinedMessage {
    return {
      id: String(message.seq),
      body: message.data,
      headers: publisherHeaders(message.headers),
      history: decodeHistory(ourHeaders(message.headers), NATS_HISTORY_CODEC, options.stream),
    };
  }

  /** How many of this source's messages the dead-letter stream holds, and its last sequence. */
  async function held(jsm: JetStreamManager): Promise<{ count: number; last: number }> {
    const info = await jsm.streams.info(deadLetterStream, { subjects_filter: ownSubjects });
    let count = 0;
    for (const n of Object.values(info.state.subjects ?? {})) count += n;
    return { count, last: info.state.last_seq };
  }

  /**
   * Visits every message of this source present when the scan starts, oldest first, until
   * `visit` says stop.
   */
  async function scan(visit: (message: JsMsg) => Promise<boolean>): Promise<void> {
    const { js, jsm } = await open();
    let last: number;
    try {
      const mine = await held(jsm);
      if (mine.count === 0) return;
      last = mine.last;
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    // One filter subject (a string): NATS 2.9 knows no filter_subjects list.
    const reader = await js.consumers.get(deadLetterStream, { filter_subjects: ownSubjects });
    const messages = await reader.consume({ max_messages: 256 });
    try {
      for await (const message of messages) {
        if (message.seq > last) break;
        if (!(await visit(message))) break;
        if (message.seq === last || message.info.pending === 0) break;
      }
    } finally {
      await messages.close();
    }
  }

  return {
    stream: options.stream,
    deadLetterStream,

    async list(filter?: QuarantineFilter) {
      checkQuarantineFilter(filter);
      const now = clock.now();
      const out: QuarantinedMessage[] = [];
      if (filter?.limit === 0) return out;
      await scan(async (message) => {
        const item = read(message);
        if (matchesFilter(item.history, filter, now)) out.push(item);
        return filter?.limit === undefined || out.length < filter.limit;
      });
      return out;
    },

    async redrive(filter) {
      /** Whether the message at `seq` is still in the dead-letter stream. */
      const stillHeld = async (jsm: JetStreamManager, seq: number): Promise<boolean> =>
        (await jsm.streams.getMessage(deadLetterStream, { seq })) !== null;
      /**
       * Deletes the message at `seq`; false when another run deleted it first. The servers
       * name a missing sequence with different codes (10037, 10043, 10057 by version), so a
       * failed delete is told from a missing message by looking for the message again.
       */
      const removed = async (jsm: JetStreamManager, seq: number): Promise<boolean> => {
        try {
          return await jsm.streams.deleteMessage(deadLetterStream, seq, false);
        } catch (error) {
          if (!(await stillHeld(jsm, seq).catch(() => true))) return false;
          throw error;
        }
      };
      const rate = checkQuarantineFilter(filter);
      const spacing = rate === undefined ? 0 : 1000 / rate;
      const now = clock.now();
      const { js, jsm } = await open();
      let moved = 0;
      if (filter?.limit === 0) return moved;
      await scan(async (message) => {
        const item = read(message);
        if (!matchesFilter(item.history, filter, now)) return true;
        // Kept at quarantine; for a message put here some other way, the subject it sits
        // under names it too (`reprocess.dlq.<stream>.<original subject>`), so a redrive
        // moves every message a list shows.
        const subject = message.headers?.get(SUBJECT) || message.subject.slice(ownPrefix.length);
        if (moved > 0 && spacing > 0) await sleep(clock, spacing);
        const id = message.headers?.get(MESSAGE_ID) || `${deadLetterStream}:${message.seq}`;
        try {
          // Another redrive running beside this one may have moved it since it was read:
          // then it is not published again (past the duplicate window a second copy would go
          // through), nor counted here.
          if (!(await stillHeld(jsm, message.seq))) return true;
          await js.publish(subject, message.data, {
            headers: carryHeaders(message.headers, { [MESSAGE_ID]: id }),
            msgID: `rp-r:${deadLetterStream}:${message.seq}`,
          });
          // Counted by the run whose delete took it out: a copy published by both runs at
          // once is one message in the source (same Nats-Msg-Id), and moved once.
          if (!(await removed(jsm, message.seq))) return true;
        } catch (error) {
          throw new JetStreamPublishError(
            `redrive stopped after ${moved} message(s): ${item.id} could not be moved back to ${subject}; it stays in ${deadLetterStream}`,
            error,
          );
        }
        moved += 1;
        return filter?.limit === undefined || moved < filter.limit;
      });
      return moved;
    },

    async count() {
      const { jsm } = await open();
      try {
        return (await held(jsm)).count;
      } catch (error) {
        // As a missing RabbitMQ queue is: the stream is declared with its source, so a
        // missing one is most likely a wrong name.
        if (isNotFound(error)) {
          throw new Error(`JetStream has no dead-letter stream "${deadLetterStream}"`, {
            cause: error,
          });
        }
        throw error;
      }
    },

    close() {
      const current = opened;
      opened = undefined;
      if (current) closing = shut(current);
      return closing ?? Promise.resolve();
    },
  };
}
