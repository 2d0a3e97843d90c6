import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { type Duration, toMs } from '../../duration.js';
import { InvalidArgumentError } from '../../errors.js';
import { checkJetStreamName, checkSubject } from './nats-connection.js';

/**
 * The least an explicit MaxDeliver must leave beyond the policy's `maxAttempts`: room for a
 * crash during the last attempt and for "in progress elsewhere" bounces, so the message still
 * reaches the runtime's quarantine instead of JetStream giving up on it.
 *
 * By default there is no MaxDeliver at all (-1). The runtime quarantines at `maxAttempts`,
 * counting JetStream's own delivery count (so across crashes too), and it alone should end a
 * message: past MaxDeliver JetStream never delivers it again and only an advisory says so.
 * While the dead-letter stream refuses (deleted, full, a message too large for it), each try
 * at the quarantine is one more delivery, so any finite MaxDeliver would strand the message,
 * in neither the consumer's hands nor the dead-letter stream.
 */
export const MAX_DELIVER_MARGIN = 5;

/** Names and settings of the streams and consumer behind one JetStream source. */
export interface JetStreamTopologyOptions {
  /** The stream the consumer reads. */
  stream: string;
  /** The durable pull consumer's name. */
  durable: string;
  /** Subjects of the stream when reprocess creates it (default `<stream>.>`). */
  subjects?: readonly string[];
  /** Only these subjects of the stream (default: all). */
  filterSubject?: string;
  /** Stream for quarantined messages (default `<stream>_DLQ`). */
  deadLetterStream?: string;
  /** How long a delivery may stay unacked before JetStream redelivers it (default 30s). */
  ackWait?: Duration;
  /**
   * The retry policy's `maxAttempts`: an explicit `maxDeliver` must be at least
   * maxAttempts + {@link MAX_DELIVER_MARGIN}.
   */
  maxAttempts?: number;
  /**
   * MaxDeliver (default -1: no limit, the runtime's quarantine ends a message; see
   * {@link MAX_DELIVER_MARGIN} for why a limit can strand one).
   */
  maxDeliver?: number;
}

/** The resolved topology. */
export interface JetStreamTopology {
  stream: string;
  durable: string;
  subjects: readonly string[];
  filterSubject: string | undefined;
  deadLetterStream: string;
  /** Quarantined messages are published to `<deadLetterSubject>.<original subject>`. */
  deadLetterSubject: string;
  ackWaitMs: number;
  maxDeliver: number;
}

/** Validates the options and fills the defaults; no I/O. */
export function resolveJetStreamTopology(options: JetStreamTopologyOptions): JetStreamTopology {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('JetStream topology options must be an object');
  }
  checkJetStreamName(options.stream, 'stream');
  checkJetStreamName(options.durable, 'durable');
  const deadLetterStream = options.deadLetterStream ?? `${options.stream}_DLQ`;
  checkJetStreamName(deadLetterStream, 'deadLetterStream');
  if (deadLetterStream === options.stream) {
    throw new InvalidArgumentError('deadLetterStream must differ from stream');
  }
  const subjects = options.subjects ?? [`${options.stream}.>`];
  if (!Array.isArray(subjects) || subjects.length === 0) {
    throw new InvalidArgumentError('subjects must be a non-empty array of subjects');
  }
  for (const [i, s] of subjects.entries()) checkSubject(s, `subjects[${i}]`, true);
  if (options.filterSubject !== undefined)
    checkSubject(options.filterSubject, 'filterSubject', true);
  const ackWaitMs = toMs(options.ackWait ?? '30s', 'ackWait');
  if (ackWaitMs < 100)
    throw new InvalidArgumentError(`ackWait must be at least 100ms, got ${ackWaitMs}`);
  if (
    options.maxAttempts !== undefined &&
    (!Number.isInteger(options.maxAttempts) || options.maxAttempts < 1)
  ) {
    throw new InvalidArgumentError(
      `maxAttempts must be an integer >= 1, got ${String(options.maxAttempts)}`,
    );
  }
  if (
    options.maxDeliver !== undefined &&
    (!Number.isInteger(options.maxDeliver) || (options.maxDeliver < 1 && options.maxDeliver !== -1))
  ) {
    throw new InvalidArgumentError(
      `maxDeliver must be an integer >= 1, or -1 for no limit, got ${String(options.maxDeliver)}`,
    );
  }
  const maxDeliver = options.maxDeliver ?? -1;
  if (
    maxDeliver !== -1 &&
    options.maxAttempts !== undefined &&
    maxDeliver < options.maxAttempts + MAX_DELIVER_MARGIN
  ) {
    throw new InvalidArgumentError(
      `maxDeliver ${maxDeliver} leaves JetStream too few deliveries past maxAttempts ${options.maxAttempts}: it would stop delivering before the runtime quarantines; use at least ${options.maxAttempts + MAX_DELIVER_MARGIN}, or -1 (the default)`,
    );
  }
  return {
    stream: options.stream,
    durable: options.durable,
    subjects,
    filterSubject: options.filterSubject,
    deadLetterStream,
    deadLetterSubject: deadLetterSubjectOf(options.stream),
    ackWaitMs,
    maxDeliver,
  };
}

/**
 * The subject under which a source stream's messages are quarantined:
 * `reprocess.dlq.<stream>`, then the original subject. A dead-letter stream shared by several
 * sources holds each under its own.
 */
export function deadLetterSubjectOf(stream: string): string {
  return `reprocess.dlq.${stream}`;
}

/**
 * Creates what is missing: the stream (work-queue retention, file storage), the dead-letter
 * stream (limits retention: it keeps messages until a redrive or an operator removes them),
 * and the durable pull consumer (explicit acks, AckWait, MaxDeliver). An existing stream is
 * left as it is, but an existing dead-letter stream (shared by several sources) gets this
 * source's dead-letter subject; an existing consumer gets this AckWait and MaxDeliver.
 */
export async function declareJetStreamTopology(
  jsm: JetStreamManager,
  options: JetStreamTopologyOptions | JetStreamTopology,
): Promise<JetStreamTopology> {
  const t = 'deadLetterSubject' in options ? options : resolveJetStreamTopology(options);
  if (!(await streamExists(jsm, t.stream))) {
    await jsm.streams.add({
      name: t.stream,
      subjects: [...t.subjects],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
    });
  }
  const deadLetterSubjects = `${t.deadLetterSubject}.>`;
  const deadLetters = await streamInfo(jsm, t.deadLetterStream);
  if (deadLetters === undefined) {
    await jsm.streams.add({
      name: t.deadLetterStream,
      subjects: [deadLetterSubjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
    });
  } else if (!(deadLetters.config.subjects ?? []).some((s) => covers(s, deadLetterSubjects))) {
    // A dead-letter stream shared with other sources: this source's subject is added, or its
    // quarantine publishes would find no stream and the message would come back forever.
    await jsm.streams.update(t.deadLetterStream, {
      subjects: [...(deadLetters.config.subjects ?? []), deadLetterSubjects],
    });
  }
  const wanted = { ack_wait: nanos(t.ackWaitMs), max_deliver: t.maxDeliver };
  let existing: Awaited<ReturnType<JetStreamManager['consumers']['info']>> | undefined;
  try {
    existing = await jsm.consumers.info(t.stream, t.durable);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (existing === undefined) {
    await jsm.consumers.add(t.stream, {
      durable_name: t.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ...wanted,
      ...(t.filterSubject === undefined ? {} : { filter_subject: t.filterSubject }),
    });
  } else if (
    existing.config.ack_wait !== wanted.ack_wait ||
    existing.config.max_deliver !== wanted.max_deliver
  ) {
    await jsm.consumers.update(t.stream, t.durable, wanted);
  }
  return t;
}

/** Deletes the stream and the dead-letter stream, messages included (tests, teardown). */
export async function deleteJetStreamTopology(
  jsm: JetStreamManager,
  topology: JetStreamTopology,
): Promise<void> {
  for (const name of [topology.stream, topology.deadLetterStream]) {
    try {
      await jsm.streams.delete(name);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

/** Whether NATS subject pattern `pattern` takes every subject `subject` names (`*`, `>`). */
function covers(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i < s.length;
    if (i >= s.length) return false;
    if (p[i] === '*') {
      if (s[i] === '>') return false;
      continue;
    }
    if (p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  return (await streamInfo(jsm, name)) !== undefined;
}

async function streamInfo(
  jsm: JetStreamManager,
  name: string,
): Promise<Awaited<ReturnType<JetStreamManager['streams']['info']>> | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** JetStream's "stream not found" / "consumer not found" (HTTP-like status 404). */
export function isNotFound(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; status?: unknown };
  return (
    e.status === 404 ||
    e.code === JetStreamApiCodes.StreamNotFound ||
    e.code === JetStreamApiCodes.ConsumerNotFound
  );
}
