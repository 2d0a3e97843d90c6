/** Codes of the failures the run injects into handlers. */
export const FaultCode = {
  /** The handler threw before doing anything (a bug, an unhandled edge case). */
  HANDLER_FAULT: 'HANDLER_FAULT',
  /** The dependency applied the write, then the call timed out: the caller cannot tell. */
  DEPENDENCY_TIMEOUT: 'DEPENDENCY_TIMEOUT',
  /** The dependency of a sticky message is down until the run heals it. */
  DEPENDENCY_DOWN: 'DEPENDENCY_DOWN',
  /** A message no retry can fix. */
  POISON_ORDER: 'POISON_ORDER',
} as const;

export type FaultCode = (typeof FaultCode)[keyof typeof FaultCode];

/**
 * A transient failure injected by the run. `retryable: true` is what the default classifier
 * reads, so the consumer retries it under its policy and quarantines it when attempts run out.
 */
export class InjectedFault extends Error {
  readonly code: FaultCode;
  readonly retryable = true;

  constructor(code: FaultCode, message: string) {
    super(message);
    this.name = 'InjectedFault';
    this.code = code;
  }
}
