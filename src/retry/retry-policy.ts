import { InvalidArgumentError } from '../errors.js';
import { type ResolvedRetryOptions, resolveRetryOptions } from './resolve-options.js';
import { runRetry } from './retry.js';
import type {
  AttemptContext,
  Disposer,
  GiveUpEvent,
  RetryEvent,
  RetryOptions,
  SuccessEvent,
} from './types.js';

/** A reusable retry policy: options resolved once, events observable by many listeners. */
export interface RetryPolicy<T = unknown> {
  /** The validated options, durations in ms. */
  readonly options: ResolvedRetryOptions<T>;
  /**
   * Runs `fn` under the policy (see `retry`). `signal`, when given, aborts this call;
   * the policy's own `signal` still applies too.
   */
  execute<R extends T>(fn: (ctx: AttemptContext) => Promise<R>, signal?: AbortSignal): Promise<R>;
  /** Called before each retry's sleep; returns a disposer. */
  onRetry(listener: (event: RetryEvent) => void): Disposer;
  /** Called once when a call gives up; returns a disposer. */
  onGiveUp(listener: (event: GiveUpEvent) => void): Disposer;
  /** Called once when a call succeeds; returns a disposer. */
  onSuccess(listener: (event: SuccessEvent) => void): Disposer;
}

/**
 * Resolves `options` once (throws {@link InvalidArgumentError} on a bad value) and returns a
 * policy to share, e.g. one per dependency together with its budget. The options' own
 * `onRetry`/`onGiveUp`/`onSuccess` hooks fire as well as the listeners.
 *
 * @example
 * const payments = createRetryPolicy({ ...profiles.sync, budget: createTokenBucketBudget() });
 * const stop = payments.onRetry(({ attempt, delay }) => log.warn({ attempt, delay }, 'retrying'));
 * const receipt = await payments.execute(({ signal }) => charge(order, { signal }));
 */
export function createRetryPolicy<T = unknown>(options: RetryOptions<T> = {}): RetryPolicy<T> {
  const resolved = resolveRetryOptions(options);
  const retryListeners = new Set<(event: RetryEvent) => void>();
  const giveUpListeners = new Set<(event: GiveUpEvent) => void>();
  const successListeners = new Set<(event: SuccessEvent) => void>();
  const listeners = { retry: retryListeners, giveUp: giveUpListeners, success: successListeners };

  return {
    options: resolved,
    execute<R extends T>(fn: (ctx: AttemptContext) => Promise<R>, signal?: AbortSignal) {
      if (typeof fn !== 'function') {
        return Promise.reject(
          new InvalidArgumentError(`execute: fn must be a function, got ${typeof fn}`),
        );
      }
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        return Promise.reject(new InvalidArgumentError('execute: signal must be an AbortSignal'));
      }
      const both = combineSignals(resolved.signal, signal);
      // R extends T, so a policy over T runs fn: ... => Promise<R> unchanged.
      const run = runRetry(resolved as ResolvedRetryOptions<R>, fn, both.signal, listeners);
      if (both.release === undefined) return run;
      return run.finally(both.release);
    },
    onRetry: (listener) => subscribe(retryListeners, listener),
    onGiveUp: (listener) => subscribe(giveUpListeners, listener),
    onSuccess: (listener) => subscribe(successListeners, listener),
  };
}

function subscribe<E>(set: Set<(event: E) => void>, listener: (event: E) => void): Disposer {
  if (typeof listener !== 'function') {
    throw new InvalidArgumentError(`listener must be a function, got ${typeof listener}`);
  }
  // A wrapper, so that the same function subscribed twice is two subscriptions.
  const entry = (event: E) => listener(event);
  set.add(entry);
  return () => {
    set.delete(entry);
  };
}

/**
 * One signal that aborts when either does, for one call, and what to call when the call has
 * ended. Not `AbortSignal.any`: on Node 20 each signal it makes stays registered with its
 * sources for their whole life, so a policy's long-lived signal (a process-wide shutdown)
 * would grow by one entry per call. Here the listeners go when the call ends.
 */
export function combineSignals(
  a: AbortSignal | undefined,
  b: AbortSignal | undefined,
): { signal: AbortSignal | undefined; release?: () => void } {
  if (a === undefined) return { signal: b };
  if (b === undefined || a === b) return { signal: a };
  const controller = new AbortController();
  if (a.aborted || b.aborted) {
    controller.abort(a.aborted ? a.reason : b.reason);
    return { signal: controller.signal };
  }
  const onA = () => controller.abort(a.reason);
  const onB = () => controller.abort(b.reason);
  a.addEventListener('abort', onA, { once: true });
  b.addEventListener('abort', onB, { once: true });
  return {
    signal: controller.signal,
    release: () => {
      a.removeEventListener('abort', onA);
      b.removeEventListener('abort', onB);
    },
  };
}
