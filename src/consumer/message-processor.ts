import { hash } from 'node:crypto';
import { type Clock, systemClock } from '../clock.js';
import {
  ErrorCode,
  IdempotencyKeyMissingError,
  InvalidArgumentError,
  NonRetryableError,
  isReprocessError,
} from '../errors.js';
import { encodeForStore, runtimeStep, storedStepOf } from '../idempotency/context.js';
import { executeResolved } from '../idempotency/execute.js';
import { MAX_NAME_LENGTH } from '../idempotency/failure.js';
import { validateKey } from '../idempotency/key.js';
import { BASE_OPTIONS, type ResolvedOptions, resolveOptions } from '../idempotency/options.js';
import { checkOptionNames, optionNames } from '../option-names.js';
import { observe } from '../observe.js';
import type {
  IdempotencyBaseOptions,
  IdempotencyContext,
  OperationIdentity,
} from '../idempotency/types.js';
import type { Random } from '../random.js';
import { classifyVerdict, retryAfterMs } from '../retry/classify.js';
import { computeDelay } from '../retry/compute-delay.js';
import { profiles } from '../retry/profiles.js';
import { resolveRetryOptions } from '../retry/resolve-options.js';
import type { Classifier, RetryOptions } from '../retry/types.js';
import type { ConsumerEvent, ConsumerEventListener, RetryReason, SettleAction } from './events.js';
import {
  type KeyReader,
  type MessageKeyInput,
  type MessageKeySource,
  describeKeySource,
  keyReader,
} from './message-key.js';
import { type BodyParser, type ParseBody, bodyParser } from './parse-body.js';
import type { Delivery, Headers, QuarantineHistory } from './types.js';
import { headOf } from '../clip-text.js';

/*
 * One delivery, start to settle:
 *
 *   size / parse / validate ──fails──► quarantine 'poison'
 *   key ──none──► quarantine 'key_missing'      ──invalid──► quarantine 'poison'
 *   age > maxMessageAgeMs ──► quarantine 'max_age' (not run)
 *   executeIdempotent(handler)
 *     ├─ value, or replay of a completed operation ─────────────► ack
 *     ├─ DuplicateRequestError (onDuplicate: reject) ───────────► ack
 *     ├─ IdempotencyInProgressError ────────────────────────────► retryLater(its hint)
 *     ├─ StoreUnavailableError (handler not run, fail closed) ──► retryLater(backoff)
 *     └─ failure ─┬─ not retryable ───────────────► quarantine 'non_retryable'
 *                 ├─ attempts >= maxAttempts ─────► quarantine 'attempts_exhausted'
 *                 ├─ the next try passes max age ─► quarantine 'max_age'
 *                 └─ otherwise ───────────────────► retryLater(backoff, or Retry-After ≤ cap)
 *
 * A quarantine the broker refuses falls back to retryLater, so the message is neither lost
 * nor acked; it comes back and quarantining is tried again.
 */

/** The message the handler gets. */
export interface ConsumerMessage<B = unknown> {
  /** The parsed (and validated) body. */
  body: B;
  /** The body as delivered. */
  raw: Uint8Array;
  headers: Headers;
  /** Broker message id. */
  id: string;
  /** The queue, subject or stream it came from. */
  source: string;
  /** The broker's delivery count, when it keeps one. */
  deliveryCount: number | undefined;
  /** Attempts so far including this one: the delivery count, else the idempotency record's. */
  attempt: number;
  /** Epoch ms of publication, when the broker says. */
  publishedAt: number | undefined;
  /** Aborts when the consumer stops and this handler ran past the stop timeout. */
  signal: AbortSignal;
}

/** The user's work for one message, run at most once per idempotency key. */
export type MessageHandler<B = unknown> = (
  message: ConsumerMessage<B>,
  ctx: IdempotencyContext,
) => Promise<unknown>;

/** Idempotency of a consumer: the store and record options, plus how the scope is named. */
export interface ConsumerIdempotencyOptions<B = unknown> extends IdempotencyBaseOptions {
  /**
   * Operation name of the scope (default: the delivery's source, i.e. the queue name). Set
   * it when several queues carry the same operations, or to keep keys across a rename.
   */
  operation?: string;
  /** The tenant of a message, when keys are only unique per tenant. */
  principal?: (message: MessageKeyInput<B>) => string | undefined;
  /**
   * Which part of a message must match on a repeat of its key (default: the raw body, by
   * its SHA-256; a repeat with another body is `IdempotencyKeyReuseError`, quarantined).
   * `false` skips the check.
   */
  fingerprint?: false | ((message: MessageKeyInput<B>) => unknown);
}

/** What quarantine does beyond the retry policy. */
export interface QuarantineOptions {
  /**
   * An error no classifier recognises (a plain `Error`): `retry` it under the policy
   * (the default: the async path is patient) or `quarantine` it at once.
   */
  unknownErrors?: 'retry' | 'quarantine';
  /** Longest `lastError.message` kept in the history (default 1024 characters). */
  maxErrorMessageLength?: number;
}

/** Everything that decides what happens to one message; shared by consumers and the SQS wrapper. */
export interface MessageProcessingOptions<B = unknown> {
  handler: MessageHandler<B>;
  /** Where the idempotency key comes from (default: header `idempotency-key`, else the message id). */
  key?: MessageKeySource<B>;
  idempotency: ConsumerIdempotencyOptions<B>;
  /**
   * Backoff and attempts, over `profiles.async` (10 attempts, exponential from 2s, full
   * jitter, cap 5m). `maxAttempts`, `backoff`, `base`, `factor`, `cap`,
   * `jitter` and `classify` apply; the broker does the waiting, so `deadline`,
   * `attemptTimeout`, `budget` and the hooks do not.
   */
  retry?: RetryOptions;
  quarantine?: QuarantineOptions;
  /** Body parser (default `json`); a failure is a poison message. */
  parse?: BodyParser;
  /** Checks the parsed body and returns it typed (e.g. a zod schema's `parse`); a throw is poison. */
  validate?: (body: unknown) => B | Promise<B>;
  /**
   * Messages older than this (from `publishedAt`, else from their first failure) are not run
   * again: quarantined with reason `max_age`. Default: no limit.
   */
  maxMessageAgeMs?: number;
  /** Bodies larger than this are poison (default: no limit). */
  maxBodyBytes?: number;
  clock?: Clock;
  random?: Random;
  onEvent?: ConsumerEventListener;
}

/** Hooks the caller of {@link MessageProcessor.process} gives for one delivery. */
export interface DeliveryControl {
  /** Becomes the handler's `message.signal`. */
  signal: AbortSignal;
  /**
   * Asked right before each settling call. Returning false means the delivery was given
   * up (a stop timeout released it) and must not be settled any more.
   */
  claimSettle(): boolean;
}

/** What became of a delivery. `settled` is false when the broker refused the settling call. */
export type DeliveryResult =
  | { action: 'ack'; key: string; replayed: boolean; settled: boolean }
  | {
      action: 'retry';
      key: string | undefined;
      delayMs: number;
      reason: RetryReason;
      error: unknown;
      settled: boolean;
    }
  | { action: 'quarantine'; history: QuarantineHistory; error: unknown; settled: boolean }
  /** Given up before it could be settled (released at shutdown). */
  | { action: 'abandoned' };

/** Runs deliveries through the idempotent handler and settles them. */
export interface MessageProcessor {
  process(delivery: Delivery, control: DeliveryControl): Promise<DeliveryResult>;
  /** The resolved retry policy (async profile plus the user's overrides). */
  readonly retry: Readonly<RetryOptions>;
  readonly maxAttempts: number;
  readonly clock: Clock;
  /** The randomness of every delay (the consumer's `random`, else `retry.random`). */
  readonly random: Random;
  emit(event: ConsumerEvent): void;
}

/** Step that keeps the first failure time of an operation in its record (survives crashes). */
export const FIRST_FAILURE_STEP = 'reprocess:first-failure-at';

/**
 * Step that keeps a quarantine decided but refused by the dead-letter destination: the next
 * delivery, on any consumer, quarantines from it without running the handler again. Written
 * `done` once the quarantine went through, so that a redrive runs the handler.
 */
export const QUARANTINE_STEP = 'reprocess:quarantine';

/** What {@link QUARANTINE_STEP} holds. */
interface QuarantineMark {
  state: 'pending' | 'done';
  /** When the refusal was seen (consumer clock): a pending mark older than the window is void. */
  markedAt?: number;
  reason?: QuarantineHistory['reason'];
  attempts?: number;
  firstFailureAt?: number;
  lastFailureAt?: number;
  lastError?: QuarantineHistory['lastError'];
}

/** Thrown in place of the handler when the record holds a pending quarantine. */
class QuarantinePending extends Error {
  constructor(readonly mark: QuarantineMark) {
    super('a quarantine decided earlier was refused by the dead-letter destination');
    this.name = 'QuarantinePending';
  }
}

/**
 * A pending mark still in force at `now`: written by a refusal at most `windowMs` ago. The
 * message it sent back comes again within a backoff; a redrive, normally much later, must run
 * the handler even when the `done` write after the quarantine did not get through.
 */
function isPendingMark(
  value: unknown,
  now: number,
  windowMs: number,
): value is QuarantineMark & { state: 'pending' } {
  if (typeof value !== 'object' || value === null) return false;
  const mark = value as QuarantineMark;
  return (
    mark.state === 'pending' &&
    typeof mark.reason === 'string' &&
    typeof mark.markedAt === 'number' &&
    now - mark.markedAt <= windowMs
  );
}

const DEFAULT_MAX_ERROR_MESSAGE = 1024;

/** The options every consumer front takes (see {@link MessageProcessingOptions}). */
export const PROCESSING_OPTIONS = {
  handler: true,
  key: true,
  idempotency: true,
  retry: true,
  quarantine: true,
  parse: true,
  validate: true,
  maxMessageAgeMs: true,
  maxBodyBytes: true,
  clock: true,
  random: true,
  onEvent: true,
} as const satisfies Record<keyof MessageProcessingOptions, true>;

const IDEMPOTENCY_OPTIONS = optionNames<ConsumerIdempotencyOptions>({
  ...BASE_OPTIONS,
  operation: true,
  principal: true,
  fingerprint: true,
});

const QUARANTINE_OPTIONS = optionNames<QuarantineOptions>({
  unknownErrors: true,
  maxErrorMessageLength: true,
});

/** Validates the options once and returns the per-delivery processor. */
export function createMessageProcessor<B>(options: MessageProcessingOptions<B>): MessageProcessor {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('consumer options must be an object');
  }
  const { handler } = options;
  if (typeof handler !== 'function') {
    throw new InvalidArgumentError('handler must be a function (message, ctx) => Promise');
  }
  const clock = options.clock ?? options.idempotency?.clock ?? systemClock;
  // computeDelay's own argument wins over the policy's: the policy's is taken here.
  const random = options.random ?? options.retry?.random ?? Math.random;
  if (typeof random !== 'function') throw new InvalidArgumentError('random must be a function');
  const emitTo = options.onEvent;
  if (emitTo !== undefined && typeof emitTo !== 'function') {
    throw new InvalidArgumentError('onEvent must be a function');
  }
  const readKey: KeyReader<B> = keyReader(options.key);
  const keyWhere = describeKeySource(options.key as MessageKeySource<never> | undefined);
  const parse: ParseBody = bodyParser(options.parse);
  const validate = options.validate;
  if (validate !== undefined && typeof validate !== 'function') {
    throw new InvalidArgumentError('validate must be a function (body) => body');
  }
  const maxAgeMs = optionalLimit(options.maxMessageAgeMs, 'maxMessageAgeMs');
  const maxBodyBytes = optionalLimit(options.maxBodyBytes, 'maxBodyBytes');

  const quarantine = options.quarantine ?? {};
  if (typeof quarantine !== 'object' || quarantine === null) {
    throw new InvalidArgumentError(
      `quarantine must be an object such as { unknownErrors: 'quarantine' }, got ${String(quarantine)}`,
    );
  }
  checkOptionNames('consumer quarantine', quarantine, QUARANTINE_OPTIONS);
  const unknownErrors = quarantine.unknownErrors ?? 'retry';
  if (unknownErrors !== 'retry' && unknownErrors !== 'quarantine') {
    throw new InvalidArgumentError(
      `quarantine.unknownErrors must be "retry" or "quarantine", got ${JSON.stringify(unknownErrors)}`,
    );
  }
  const maxMessageLength = quarantine.maxErrorMessageLength ?? DEFAULT_MAX_ERROR_MESSAGE;
  if (!Number.isInteger(maxMessageLength) || maxMessageLength < 1) {
    throw new InvalidArgumentError(
      `quarantine.maxErrorMessageLength must be an integer >= 1, got ${String(maxMessageLength)}`,
    );
  }

  if (options.retry !== undefined) {
    if (typeof options.retry !== 'object' || options.retry === null) {
      throw new InvalidArgumentError(
        `retry must be an object of retry options, got ${String(options.retry)}`,
      );
    }
    for (const name of NOT_FOR_CONSUMERS) {
      if ((options.retry as Record<string, unknown>)[name] !== undefined) {
        throw new InvalidArgumentError(
          `retry.${name} does not apply to a consumer: the broker redelivers, one attempt per delivery (bound a message with maxAttempts and maxMessageAgeMs)`,
        );
      }
    }
  }
  // Frozen, so that computeDelay resolves it once (a cached resolution).
  const retry: Readonly<RetryOptions> = Object.freeze({ ...profiles.async, ...options.retry });
  const resolvedRetry = resolveRetryOptions(retry);
  const { maxAttempts } = resolvedRetry;
  const capMs = resolvedRetry.backoff.cap;
  /** How long a pending quarantine mark holds: the redelivery comes within a backoff. */
  const markWindowMs = Math.max(2 * capMs, 60_000);
  const classify: Classifier | undefined = resolvedRetry.classify;

  const idem = options.idempotency;
  if (typeof idem !== 'object' || idem === null) {
    throw new InvalidArgumentError(
      'idempotency options are required: { store, operation?, ttl?, lease? ... }',
    );
  }
  checkOptionNames('consumer idempotency', idem, IDEMPOTENCY_OPTIONS);
  const { operation, principal, fingerprint } = idem;
  if (operation !== undefined && (typeof operation !== 'string' || operation === '')) {
    throw new InvalidArgumentError(
      `idempotency.operation must be a non-empty string, got ${JSON.stringify(operation)}`,
    );
  }
  if (principal !== undefined && typeof principal !== 'function') {
    throw new InvalidArgumentError('idempotency.principal must be a function (message) => string');
  }
  if (fingerprint !== undefined && fingerprint !== false && typeof fingerprint !== 'function') {
    throw new InvalidArgumentError('idempotency.fingerprint must be false or a function');
  }
  const userRemember = idem.rememberFailures ?? false;
  const storeClassify = idem.classify ?? classify;
  const execute: ResolvedOptions<unknown> = resolveOptions<unknown>({
    ...idem,
    ...(storeClassify ? { classify: storeClassify } : {}),
    clock: idem.clock ?? clock,
    // Remember only what this consumer quarantines at once: a failure it retries must run
    // again on the next delivery, not replay.
    rememberFailures: (error: unknown) =>
      !(error instanceof QuarantinePending) &&
      !notRemembered.has(error as object) &&
      retryVerdict(error) === false &&
      (typeof userRemember === 'function' ? userRemember(error) : userRemember),
  });
  // The runtime's own steps take none of the user's maxSteps or maxStepsBytes.
  execute.uncountedSteps = new Set([FIRST_FAILURE_STEP, QUARANTINE_STEP]);

  /** true: retry; false: never; by the unknownErrors rule when no classifier knows it. */
  function retryVerdict(error: unknown): boolean {
    return classifyChain(error, classify) ?? unknownErrors === 'retry';
  }

  function emit(event: ConsumerEvent): void {
    // A listener's bug (a throw, a rejected promise) must not change what happens to a message.
    observe(emitTo, event);
  }

  function backoff(attempts: number, error: unknown, now: number): number {
    const hint = error === undefined ? undefined : retryAfterSafely(error, now);
    if (hint !== undefined) return Math.min(capMs, hint);
    return computeDelay(retry, Math.max(0, attempts - 1), random);
  }

  function summarize(error: unknown): QuarantineHistory['lastError'] {
    // Every read guarded: a thrown value of any shape must still become a history.
    const holder = typeof error === 'object' && error !== null ? error : {};
    const e = {
      name: readSafely(holder, 'name'),
      code: readSafely(holder, 'code'),
      message: readSafely(holder, 'message'),
    };
    // Name and code bounded as a stored failure bounds them (an SDK may copy either from a
    // server's answer): the history rides in broker headers, whose size is limited.
    const name = clipText(
      typeof e.name === 'string' && e.name !== '' ? e.name : 'Error',
      MAX_NAME_LENGTH,
    );
    const message = clipText(
      typeof e.message === 'string' ? e.message : textOf(error),
      maxMessageLength,
    );
    const code =
      typeof e.code === 'string' && e.code !== ''
        ? clipText(e.code, MAX_NAME_LENGTH)
        : typeof e.code === 'number'
          ? String(e.code)
          : undefined;
    return code === undefined ? { name, message } : { name, code, message };
  }

  // The settling helpers live here, not inside process: closures made per message cost
  // allocations (and a name-setting call each under tsx) at thousands of messages a second.

  async function settle(
    delivery: Delivery,
    action: SettleAction,
    work: () => Promise<void>,
  ): Promise<boolean> {
    try {
      await work();
      return true;
    } catch (error) {
      emit({ type: 'settle_failed', id: delivery.id, source: delivery.source, action, error });
      return false;
    }
  }

  /**
   * Writes {@link QUARANTINE_STEP} under the acquisition of `run` (fenced: nothing is written
   * if another worker took the operation since). Best effort: when it cannot be written, the
   * next delivery runs the handler as it would have without it.
   */
  async function mark(run: HandlerRun<B>, value: QuarantineMark): Promise<void> {
    if (run.key === undefined || run.token === undefined) return;
    let text: string;
    try {
      text = encodeForStore(execute.codec, value, execute.maxResultBytes, 'the quarantine mark');
    } catch {
      return; // a codec that cannot write it: as if the store had not answered
    }
    // A few tries: one dropped connection must not leave a stale mark (a `done` that did not
    // get through would send a prompt redrive back to quarantine until the mark's window ends).
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const answer = await execute.store.saveStep(run.key, run.token, QUARANTINE_STEP, text);
        if ((answer as { kind?: unknown } | undefined)?.kind !== undefined) return; // ok, or fenced
      } catch {
        // The store did not answer: try again, then give up as above.
      }
    }
  }

  async function sendToQuarantine(
    delivery: Delivery,
    control: DeliveryControl,
    reason: QuarantineHistory['reason'],
    error: unknown,
    key: string | undefined,
    attempts: number,
    firstFailureAt: number,
    lastFailureAt: number,
    run?: HandlerRun<B>,
  ): Promise<DeliveryResult> {
    const history: QuarantineHistory = {
      attempts,
      firstFailureAt,
      lastFailureAt,
      lastError: summarize(error),
      reason,
      source: delivery.source,
      quarantinedAt: clock.now(),
    };
    if (key !== undefined) history.idempotencyKey = key;
    if (!control.claimSettle()) return { action: 'abandoned' };
    let settled = await settle(delivery, 'quarantine', () => delivery.quarantine(history));
    if (settled) {
      // Quarantined after a refusal: a redrive must run the handler again.
      if (run?.fromMark) await mark(run, { state: 'done' });
      emit({ type: 'quarantined', id: delivery.id, source: delivery.source, history, error });
      return { action: 'quarantine', history, error, settled };
    }
    // The dead-letter destination refused: bring it back later and quarantine then, without
    // running the handler again (the decision is kept in the record, for whichever consumer
    // gets the message next).
    if (run !== undefined) {
      // Written again at each refusal: the mark holds while the destination keeps refusing.
      await mark(run, {
        state: 'pending',
        markedAt: clock.now(),
        reason,
        attempts,
        firstFailureAt,
        lastFailureAt,
        lastError: history.lastError,
      });
    }
    const delayMs = backoff(attempts, undefined, clock.now());
    if (!control.claimSettle()) return { action: 'abandoned' };
    settled = await settle(delivery, 'retryLater', () => delivery.retryLater(delayMs));
    if (!settled) return { action: 'quarantine', history, error, settled: false };
    emit({
      type: 'retry_scheduled',
      id: delivery.id,
      source: delivery.source,
      key,
      attempt: attempts,
      delayMs,
      reason: 'quarantine_failed',
      error,
    });
    return { action: 'retry', key, delayMs, reason: 'quarantine_failed', error, settled: true };
  }

  async function sendBack(
    delivery: Delivery,
    control: DeliveryControl,
    reason: RetryReason,
    delayMs: number,
    error: unknown,
    key: string | undefined,
    attempt: number,
  ): Promise<DeliveryResult> {
    if (!control.claimSettle()) return { action: 'abandoned' };
    const settled = await settle(delivery, 'retryLater', () => delivery.retryLater(delayMs));
    if (settled) {
      emit({
        type: 'retry_scheduled',
        id: delivery.id,
        source: delivery.source,
        key,
        attempt,
        delayMs,
        reason,
        error,
      });
    }
    return { action: 'retry', key, delayMs, reason, error, settled };
  }

  async function ack(
    delivery: Delivery,
    control: DeliveryControl,
    key: string,
    replayed: boolean,
  ): Promise<DeliveryResult> {
    if (!control.claimSettle()) return { action: 'abandoned' };
    // settle() inlined: the hot path, once per message, without a closure.
    let settled = true;
    try {
      await delivery.ack();
    } catch (error) {
      settled = false;
      emit({
        type: 'settle_failed',
        id: delivery.id,
        source: delivery.source,
        action: 'ack',
        error,
      });
    }
    if (settled && emitTo !== undefined) {
      emit({ type: 'acked', id: delivery.id, source: delivery.source, key, replayed });
    }
    return { action: 'ack', key, replayed, settled };
  }

  // process is split in small pieces: a synchronous start (parse, key, checks) and short async
  // frames around the awaits. An async function keeps its whole register file alive across an
  // await, so one large async function would cost its full frame per message.

  function process(delivery: Delivery, control: DeliveryControl): Promise<DeliveryResult> {
    try {
      const receivedAt = clock.now();
      // 1. The body.
      if (maxBodyBytes !== undefined && delivery.body.byteLength > maxBodyBytes) {
        const poison = poisonError(
          delivery,
          `the body is ${delivery.body.byteLength} bytes, over maxBodyBytes (${maxBodyBytes})`,
        );
        return afterParse(delivery, control, receivedAt, undefined, poison);
      }
      let body: unknown;
      let validated = false;
      try {
        // Awaited only when it is a promise: the built-in parsers are synchronous.
        body = parse(delivery.body, delivery.headers);
        if (validate && !isThenable(body)) {
          body = validate(body);
          validated = true;
        }
      } catch (error) {
        return afterParse(
          delivery,
          control,
          receivedAt,
          undefined,
          poisonError(delivery, describe(error), error),
        );
      }
      if (isThenable(body)) return parseLater(delivery, control, receivedAt, body, validated);
      return afterParse(delivery, control, receivedAt, body, undefined);
    } catch (error) {
      // Not expected (every outcome is a result); a rejection, as from an async function.
      return Promise.reject(error);
    }
  }

  async function parseLater(
    delivery: Delivery,
    control: DeliveryControl,
    receivedAt: number,
    pending: PromiseLike<unknown>,
    validated: boolean,
  ): Promise<DeliveryResult> {
    let body: unknown;
    try {
      body = await pending;
      if (validate && !validated) body = await validate(body);
    } catch (error) {
      return await afterParse(
        delivery,
        control,
        receivedAt,
        undefined,
        poisonError(delivery, describe(error), error),
      );
    }
    return await afterParse(delivery, control, receivedAt, body, undefined);
  }

  /** 2. The key, 3. the age; then the handler or quarantine. */
  function afterParse(
    delivery: Delivery,
    control: DeliveryControl,
    receivedAt: number,
    body: unknown,
    poison: unknown,
  ): Promise<DeliveryResult> {
    const deliveries = delivery.deliveryCount ?? 1;
    // A key outside the body is still found for a poison message's history.
    const keyInput: MessageKeyInput<B> = {
      id: delivery.id,
      headers: delivery.headers,
      body: poison ? undefined : (body as B),
      raw: delivery.body,
    };
    let key: string | undefined;
    let keyError: unknown;
    try {
      const found = readKey(keyInput);
      if (found !== undefined && found !== null) {
        key = validateKey(found, `the idempotency key of message ${delivery.id} (${keyWhere})`);
      }
    } catch (error) {
      keyError = error;
    }
    if (poison) {
      return sendToQuarantine(
        delivery,
        control,
        'poison',
        poison,
        key,
        deliveries,
        receivedAt,
        receivedAt,
      );
    }
    if (key === undefined) {
      if (keyError === undefined || isReprocessError(keyError, ErrorCode.IDEMPOTENCY_KEY_MISSING)) {
        const missing = new IdempotencyKeyMissingError(
          `message ${delivery.id} from ${delivery.source} has no idempotency key (looked at ${keyWhere})`,
        );
        return sendToQuarantine(
          delivery,
          control,
          'key_missing',
          missing,
          undefined,
          deliveries,
          receivedAt,
          receivedAt,
        );
      }
      return sendToQuarantine(
        delivery,
        control,
        'poison',
        keyError,
        undefined,
        deliveries,
        receivedAt,
        receivedAt,
      );
    }

    // 3. Too old to run at all: not run, but still through the state machine, so that an
    // operation that completed (its ack lost) is acked as a replay, and one another worker
    // holds is left to it, rather than quarantined.
    let tooOld: NonRetryableError | undefined;
    if (
      maxAgeMs !== undefined &&
      delivery.publishedAt !== undefined &&
      receivedAt - delivery.publishedAt > maxAgeMs
    ) {
      tooOld = new NonRetryableError(
        `message ${delivery.id} is ${receivedAt - delivery.publishedAt} ms old, over maxMessageAgeMs (${maxAgeMs}); not run`,
        { code: 'MESSAGE_TOO_OLD' },
      );
      notRemembered.add(tooOld);
    }

    // 4. The handler, through the idempotency state machine.
    const identity: OperationIdentity = {
      operation: operation ?? delivery.scope ?? delivery.source,
      key,
    };
    let reading = 'principal';
    try {
      if (principal) {
        const who = principal(keyInput);
        if (who !== undefined) identity.principal = who;
      }
      reading = 'fingerprint';
      if (fingerprint !== false) {
        identity.fingerprintOf = fingerprint ? fingerprint(keyInput) : bodyDigest(delivery.body);
      }
    } catch (error) {
      // The user's principal or fingerprint function cannot read this message (a field it
      // expects is missing): poison, as a key it cannot read is. Given back instead, it would
      // come straight back and fail the same way, forever.
      const why = `the ${reading} function threw: ${describe(error)}`;
      return sendToQuarantine(
        delivery,
        control,
        'poison',
        poisonError(delivery, why, error),
        key,
        deliveries,
        receivedAt,
        receivedAt,
      );
    }
    return runHandler(delivery, control, key, identity, body as B, tooOld);
  }

  async function runHandler(
    delivery: Delivery,
    control: DeliveryControl,
    key: string,
    identity: OperationIdentity,
    body: B,
    tooOld?: NonRetryableError,
  ): Promise<DeliveryResult> {
    const run = new HandlerRun<B>(delivery, control, body, handler, clock, markWindowMs, tooOld);
    let replayed: boolean;
    try {
      // An anonymous arrow: under tsx (the benchmarks) a named one costs a name-setting call.
      replayed = (await executeResolved(identity, (ctx) => run.call(ctx), execute)).replayed;
    } catch (error) {
      return await failed(delivery, control, key, run, error);
    }
    return await ack(delivery, control, key, replayed);
  }

  /** What a failure of executeIdempotent leads to (see the diagram at the top). */
  function failed(
    delivery: Delivery,
    control: DeliveryControl,
    key: string,
    run: HandlerRun<B>,
    error: unknown,
  ): Promise<DeliveryResult> {
    const at = clock.now();
    const deliveries = delivery.deliveryCount ?? 1;
    if (isReprocessError(error, ErrorCode.DUPLICATE_REQUEST)) {
      return ack(delivery, control, key, true);
    }
    if (isReprocessError(error, ErrorCode.IDEMPOTENCY_IN_PROGRESS)) {
      const hint = (error as { retryAfterMs?: unknown }).retryAfterMs;
      const delayMs = typeof hint === 'number' ? hint : backoff(deliveries, undefined, at);
      return sendBack(delivery, control, 'in_progress', delayMs, error, key, deliveries);
    }
    if (isReprocessError(error, ErrorCode.STORE_UNAVAILABLE)) {
      return sendBack(
        delivery,
        control,
        'store_unavailable',
        backoff(deliveries, undefined, at),
        error,
        key,
        deliveries,
      );
    }

    if (run.tooOld !== undefined && error === run.tooOld) {
      // Acquired, so never run before to completion: quarantined for its age, not run.
      return sendToQuarantine(delivery, control, 'max_age', error, key, deliveries, at, at);
    }

    if (error instanceof QuarantinePending) {
      const { mark: pending } = error;
      const last = pending.lastError ?? { name: 'Error', message: 'unknown' };
      const earlier = Object.assign(new Error(last.message), { name: last.name });
      if (last.code !== undefined) Object.assign(earlier, { code: last.code });
      return sendToQuarantine(
        delivery,
        control,
        pending.reason ?? 'attempts_exhausted',
        earlier,
        key,
        Math.max(pending.attempts ?? 1, deliveries),
        pending.firstFailureAt ?? at,
        pending.lastFailureAt ?? at,
        run,
      );
    }

    const attempts = delivery.deliveryCount ?? run.attempt ?? 1;
    const firstFailureAt = run.firstFailureAt ?? at;
    const lastFailureAt = run.failedAt ?? at;
    // Not retryable, or out of attempts; else the backoff, unless the retry would come past
    // the maximum age.
    let reason: QuarantineHistory['reason'] | undefined = !retryVerdict(error)
      ? 'non_retryable'
      : attempts >= maxAttempts
        ? 'attempts_exhausted'
        : undefined;
    let delayMs = 0;
    if (reason === undefined) {
      delayMs = backoff(attempts, error, at);
      const bornAt = delivery.publishedAt ?? firstFailureAt;
      if (maxAgeMs !== undefined && at + delayMs - bornAt > maxAgeMs) reason = 'max_age';
    }
    if (reason !== undefined) {
      return sendToQuarantine(
        delivery,
        control,
        reason,
        error,
        key,
        attempts,
        firstFailureAt,
        lastFailureAt,
        run,
      );
    }
    return sendBack(delivery, control, 'failure', delayMs, error, key, attempts);
  }

  return { process, retry, maxAttempts, clock, random, emit };
}

/**
 * The verdict along the cause chain and through aggregates, as `isRetryable` reaches it: the
 * user's classifier, then the default rules; undefined when no link is recognised (the
 * caller's `unknownErrors` rule decides). A classifier that throws on the error (a bug in
 * it, or an error that cannot be looked at: a getter that throws) recognises nothing: the
 * `unknownErrors` rule decides too, and the attempts bound it as any retry.
 */
function classifyChain(error: unknown, classify: Classifier | undefined): boolean | undefined {
  try {
    return classifyVerdict(error, classify);
  } catch {
    return undefined;
  }
}

/** Retry options of an in-process loop, which a consumer never runs. */
const NOT_FOR_CONSUMERS = [
  'deadline',
  'attemptTimeout',
  'budget',
  'signal',
  'retryOnResult',
  'onRetry',
  'onGiveUp',
  'onSuccess',
] as const;

/** The error's Retry-After, or none when it cannot be read (a getter that throws). */
function retryAfterSafely(error: unknown, now: number): number | undefined {
  try {
    return retryAfterMs(error, now);
  } catch {
    return undefined;
  }
}

/** `value[name]`, or undefined when reading it throws (a getter, a revoked proxy). */
function readSafely(value: object, name: string): unknown {
  try {
    return (value as Record<string, unknown>)[name];
  } catch {
    return undefined;
  }
}

/** `String(value)`, or a description of its type when that throws (no toString, a bad one). */
function textOf(value: unknown): string {
  try {
    return String(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return '[a value that cannot be shown]';
    }
  }
}

/** `text` cut to `max` characters, the last one an ellipsis. */
function clipText(text: string, max: number): string {
  return text.length > max ? `${headOf(text, max - 1)}…` : text;
}

function poisonError(delivery: Delivery, why: string, cause?: unknown): NonRetryableError {
  return new NonRetryableError(
    `message ${delivery.id} from ${delivery.source} is poison: ${why}`,
    cause === undefined ? { code: 'POISON_MESSAGE' } : { code: 'POISON_MESSAGE', cause },
  );
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * The handler's message. A class, so that the `signal` getter lives once on the prototype:
 * an object literal with a getter costs a fresh accessor per message.
 */
class HandlerMessage<B> implements ConsumerMessage<B> {
  body: B;
  raw: Uint8Array;
  headers: Headers;
  id: string;
  source: string;
  deliveryCount: number | undefined;
  attempt: number;
  publishedAt: number | undefined;
  readonly #control: DeliveryControl;

  constructor(delivery: Delivery, body: B, attempt: number, control: DeliveryControl) {
    this.body = body;
    this.raw = delivery.body;
    this.headers = delivery.headers;
    this.id = delivery.id;
    this.source = delivery.source;
    this.deliveryCount = delivery.deliveryCount;
    this.attempt = delivery.deliveryCount ?? attempt;
    this.publishedAt = delivery.publishedAt;
    this.#control = control;
  }

  /** Read on demand: the consumer makes the AbortController only if it is looked at. */
  get signal(): AbortSignal {
    return this.#control.signal;
  }
}

/** One run of the handler under the idempotency core, and what it saw of a failure. */
/**
 * Errors never recorded as an operation's failure whatever `rememberFailures` says: the
 * refusal of a message too old to run, and what a handler threw once stop() had given its
 * delivery back. The operation is released instead, for the next delivery to decide.
 */
const notRemembered = new WeakSet<object>();

class HandlerRun<B> {
  attempt: number | undefined;
  /** The stored key and token of the acquisition that ran (or would have run) the handler. */
  key: string | undefined;
  token: number | undefined;
  /** The record held a pending quarantine: the handler did not run. */
  fromMark = false;
  firstFailureAt: number | undefined;
  failedAt: number | undefined;
  readonly #delivery: Delivery;
  readonly #control: DeliveryControl;
  readonly #body: B;
  readonly #handler: MessageHandler<B>;
  readonly #clock: Clock;
  readonly #markWindowMs: number;
  /** Set when the message is past its maximum age: thrown instead of running the handler. */
  readonly tooOld: NonRetryableError | undefined;

  constructor(
    delivery: Delivery,
    control: DeliveryControl,
    body: B,
    handler: MessageHandler<B>,
    clock: Clock,
    markWindowMs: number,
    tooOld?: NonRetryableError,
  ) {
    this.tooOld = tooOld;
    this.#markWindowMs = markWindowMs;
    this.#delivery = delivery;
    this.#control = control;
    this.#body = body;
    this.#handler = handler;
    this.#clock = clock;
  }

  /** What the idempotency core runs (at most once per key). */
  async call(ctx: IdempotencyContext): Promise<unknown> {
    this.attempt = ctx.attempt;
    this.key = ctx.key;
    this.token = ctx.token;
    if (ctx.resumed) {
      // A quarantine decided by an earlier delivery and refused by the dead-letter
      // destination: quarantine again, do not run the handler again.
      let pending: unknown;
      try {
        pending = storedStepOf(ctx, QUARANTINE_STEP);
      } catch {
        pending = undefined; // unreadable: as if absent
      }
      if (isPendingMark(pending, this.#clock.now(), this.#markWindowMs)) {
        this.fromMark = true;
        throw new QuarantinePending(pending);
      }
    }
    if (this.tooOld !== undefined) throw this.tooOld;
    const message = new HandlerMessage(this.#delivery, this.#body, ctx.attempt, this.#control);
    try {
      return await this.#handler(message, ctx);
    } catch (error) {
      let thrown = error;
      if (this.#control.signal.aborted) {
        // Given up on by stop(): the delivery went back to the broker, and what the handler
        // threw is most likely that abort. Never recorded as the operation's failure (which a
        // redelivery would replay, and quarantine, for the whole ttl): released instead.
        if (typeof thrown !== 'object' || thrown === null) thrown = this.#control.signal.reason;
        if (typeof thrown === 'object' && thrown !== null) notRemembered.add(thrown);
      }
      const at = this.#clock.now();
      this.failedAt = at;
      try {
        // Stored once per operation, fenced like any step: later failures read it back.
        this.firstFailureAt = await runtimeStep(ctx, FIRST_FAILURE_STEP, () => at);
      } catch {
        this.firstFailureAt = at;
      }
      throw thrown;
    }
  }
}

function bodyDigest(raw: Uint8Array): string {
  // One-shot hash: a third of createHash().update().digest()'s cost on a small body.
  return hash('sha256', raw, 'hex');
}

function optionalLimit(value: number | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`${what} must be a finite number >= 0, got ${String(value)}`);
  }
  return value;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const message = readSafely(error, 'message');
    if (typeof message === 'string' && message !== '') return message;
    const name = readSafely(error, 'name');
    if (typeof name === 'string') return name;
  }
  return textOf(error);
}
