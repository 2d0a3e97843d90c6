import type { Clock } from '../clock.js';
import type { Duration } from '../duration.js';
import type { Random } from '../random.js';
import type { BackoffKind } from './backoff.js';
import type { JitterKind } from './jitter.js';

/** Given to each attempt. */
export interface AttemptContext {
  /** 1 for the first call. */
  attempt: number;
  /** Fires at the attempt timeout or when the caller's signal aborts, whichever is first. */
  signal: AbortSignal;
  /** Epoch ms after which no attempt starts (Infinity without a deadline). */
  deadline: number;
}

/** Decides whether a failure is worth another attempt. */
export type Classifier = (error: unknown) => boolean | undefined;

/** A retry budget shared by every call to one dependency. */
export interface RetryBudget {
  /** Called once per logical call before its first attempt (never blocks it). */
  onRequest(): void;
  /** Asks to pay for one retry; false means no retry (the error is returned at once). */
  tryAcquireRetry(cause: unknown): boolean;
  /**
   * Gives back a retry paid for and then not sent (the sleep before it woke past the
   * deadline). Optional: a budget without it keeps the payment.
   */
  refundRetry?(cause: unknown): void;
  /** Called when a call succeeds. */
  onSuccess(): void;
  /** What is left, for telemetry (tokens, or retries allowed now). */
  remaining(): number;
}

export interface RetryEvent {
  attempt: number;
  error: unknown;
  /** Delay before the next attempt, ms. */
  delay: number;
}

export interface GiveUpEvent {
  attempts: number;
  error: unknown;
  reason: 'not_retryable' | 'attempts' | 'deadline' | 'budget' | 'aborted';
}

export interface SuccessEvent {
  attempts: number;
  /** Total elapsed ms on the policy's clock. */
  elapsed: number;
}

/** Everything `retry` takes. Durations are ms or strings like `250ms`. */
export interface RetryOptions<T = unknown> {
  /** Attempts, not retries: 5 means at most 5 calls (default 3). */
  maxAttempts?: number;
  backoff?: BackoffKind;
  /** First delay (default 100ms). */
  base?: Duration;
  factor?: number;
  /** Largest delay (default 30s). */
  cap?: Duration;
  jitter?: JitterKind;
  /** Total time budget from the first call. */
  deadline?: Duration;
  /** Per-attempt timeout, through the attempt's AbortSignal. */
  attemptTimeout?: Duration;
  signal?: AbortSignal;
  /** Extra classification, consulted before the default; return undefined to defer. */
  classify?: Classifier;
  /** Retry when the returned value says so (e.g. a 503 Response). */
  retryOnResult?: (value: T) => boolean;
  budget?: RetryBudget;
  clock?: Clock;
  random?: Random;
  /** Name of the dependency, for telemetry. */
  name?: string;
  onRetry?: (event: RetryEvent) => void;
  onGiveUp?: (event: GiveUpEvent) => void;
  onSuccess?: (event: SuccessEvent) => void;
}

/** Removes the listener it was returned for. Calling it twice is harmless. */
export type Disposer = () => void;
