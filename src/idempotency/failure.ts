import { ErrorCode, RecordCorruptError, ReprocessError } from '../errors.js';
import { headOf } from '../clip-text.js';

/** Longest stored error message; the rest is cut (a failure record is not a log). */
const MAX_MESSAGE_LENGTH = 4096;
/** Longest stored error name or code (an SDK may copy either from a server's answer). */
export const MAX_NAME_LENGTH = 256;

/** What a failed record keeps of the error: enough to rethrow it recognisably. */
export interface StoredFailure {
  name: string;
  /**
   * The error's own `code` when it had one: a string, or a number (a gRPC status, a
   * `DOMException` code).
   */
  code?: string | number;
  message: string;
  /** The error's HTTP status (`status` or `statusCode`, 100..599) when it had one. */
  status?: number;
}

/**
 * A remembered failure, rethrown on a repeat of an operation that failed for good. It has
 * the original `name`, `code` (`REPLAYED_FAILURE` when the original had none), `message`
 * and `status`, `replayed: true`, and is never retryable. The original stack is not kept.
 */
export class ReplayedFailureError extends ReprocessError {
  /** Always true: this error was read back from the store, not thrown by this run. */
  readonly replayed = true;
  /** The original error's `code`, if it had one (a number too: `code` is then REPLAYED_FAILURE). */
  readonly originalCode: string | number | undefined;

  constructor(failure: StoredFailure) {
    const code = typeof failure.code === 'string' ? failure.code : ErrorCode.REPLAYED_FAILURE;
    super(code, failure.message, {
      retryable: false,
      ...(failure.status === undefined ? {} : { status: failure.status }),
    });
    this.name = failure.name;
    this.originalCode = failure.code;
  }
}

/** Encodes what {@link ReplayedFailureError} needs of `error` (any thrown value). */
export function encodeFailure(error: unknown): string {
  return JSON.stringify(describeFailure(error));
}

/**
 * The {@link StoredFailure} of any thrown value. Never throws: a value whose `toString` or
 * getters throw (or a null-prototype object) is described generically, so that the failure
 * is still recorded instead of leaving the operation in progress.
 */
export function describeFailure(error: unknown): StoredFailure {
  try {
    return describeValue(error);
  } catch {
    return { name: 'Error', message: 'a thrown value that could not be described' };
  }
}

function describeValue(error: unknown): StoredFailure {
  if (!(error instanceof Error) && (typeof error !== 'object' || error === null)) {
    return { name: 'Error', message: clip(String(error), MAX_MESSAGE_LENGTH) };
  }
  const e = error as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
    status?: unknown;
    statusCode?: unknown;
  };
  const failure: StoredFailure = {
    name: typeof e.name === 'string' && e.name !== '' ? clip(e.name, MAX_NAME_LENGTH) : 'Error',
    message: clip(typeof e.message === 'string' ? e.message : String(error), MAX_MESSAGE_LENGTH),
  };
  if (typeof e.code === 'string' && e.code !== '') failure.code = clip(e.code, MAX_NAME_LENGTH);
  else if (typeof e.code === 'number' && Number.isFinite(e.code)) failure.code = e.code;
  const status = httpStatus(e.status) ?? httpStatus(e.statusCode);
  if (status !== undefined) failure.status = status;
  return failure;
}

/** Reads back a failure written by {@link encodeFailure}; {@link RecordCorruptError} otherwise. */
export function decodeFailure(text: string): ReplayedFailureError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new RecordCorruptError('stored failure is not valid JSON', error);
  }
  const f = parsed as Partial<Record<keyof StoredFailure, unknown>> | null;
  if (
    f === null ||
    typeof f !== 'object' ||
    typeof f.name !== 'string' ||
    typeof f.message !== 'string' ||
    (f.code !== undefined && typeof f.code !== 'string' && !Number.isFinite(f.code)) ||
    (f.status !== undefined && httpStatus(f.status) === undefined)
  ) {
    throw new RecordCorruptError('stored failure does not have a name and a message');
  }
  const failure: StoredFailure = { name: f.name, message: f.message };
  if (typeof f.code === 'string' || typeof f.code === 'number') failure.code = f.code;
  if (typeof f.status === 'number') failure.status = f.status;
  return new ReplayedFailureError(failure);
}

function httpStatus(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 100 && value <= 599
    ? value
    : undefined;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${headOf(text, max)}…` : text;
}
