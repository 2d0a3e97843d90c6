import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { setStep } from './set-step.js';
import {
  ErrorCode,
  InvalidArgumentError,
  LeaseLostError,
  RecordCorruptError,
  ResultNotStorableError,
} from '../errors.js';
import { deriveKey } from './hash.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { ResolvedOptions } from './options.js';
import { checkFenced, describe, isStoreRefusal, storeFailure } from './store-results.js';
import type { Codec, IdempotencyContext } from './types.js';

/** Longest step name, in UTF-16 units. */
export const MAX_STEP_NAME_LENGTH = 200;

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** Checks a step (or derived-key) name: a string of 1..200 characters without control characters. */
export function checkStepName(name: unknown, what = 'step name'): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(
      `${what} must be a non-empty string, got ${JSON.stringify(name)}`,
    );
  }
  // Characters as keys count them (code points): an emoji is one, not two UTF-16 units.
  const length = name.length <= MAX_STEP_NAME_LENGTH ? name.length : codePoints(name);
  if (length > MAX_STEP_NAME_LENGTH) {
    throw new InvalidArgumentError(
      `${what} must be at most ${MAX_STEP_NAME_LENGTH} characters, got ${length}`,
    );
  }
  if (CONTROL.test(name)) {
    throw new InvalidArgumentError(`${what} must not contain control characters`);
  }
  // A store keeps names as UTF-8, where a lone surrogate becomes U+FFFD: the step would be
  // saved under another name, not found on the next attempt, and its work run again.
  if (!(name as string & { isWellFormed(): boolean }).isWellFormed()) {
    throw new InvalidArgumentError(
      `${what} must be well-formed text; it has a lone UTF-16 surrogate`,
    );
  }
  return name;
}

/**
 * Encodes a value for the store, or throws {@link ResultNotStorableError}: code
 * `RESULT_NOT_STORABLE` when the codec refuses it, `RESULT_TOO_LARGE` when its UTF-8 bytes
 * pass `maxBytes`. `what` names the value in messages ("the result", "step \"charge\"").
 */
export function encodeForStore(
  codec: Codec,
  value: unknown,
  maxBytes: number,
  what: string,
): string {
  let text: unknown;
  try {
    text = codec.encode(value);
  } catch (error) {
    throw new ResultNotStorableError(`${what} cannot be stored: ${describe(error)}`, error);
  }
  if (typeof text !== 'string') {
    throw new ResultNotStorableError(
      `${what} cannot be stored: codec.encode returned ${typeof text}, not a string`,
    );
  }
  if (!(text as string & { isWellFormed(): boolean }).isWellFormed()) {
    // The stores keep UTF-8 and refuse it (it would come back as U+FFFD): refused here, so
    // that the effect behind it is recorded as failed rather than left to run again.
    throw new ResultNotStorableError(
      `${what} cannot be stored: codec.encode returned text with a lone UTF-16 surrogate`,
    );
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: skip the count when it cannot pass the bound.
  if (text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > maxBytes) {
      throw new ResultNotStorableError(
        `${what} is too large to store: ${bytes} bytes encoded, over maxResultBytes (${maxBytes})`,
        undefined,
        ErrorCode.RESULT_TOO_LARGE,
      );
    }
  }
  return text;
}

/** Decodes a stored value, or throws {@link RecordCorruptError} naming `what`. */
export function decodeFromStore(codec: Codec, text: string, what: string): unknown {
  try {
    return codec.decode(text);
  } catch (error) {
    throw new RecordCorruptError(`${what} cannot be read back: ${describe(error)}`, error);
  }
}

/** What one acquisition knows when it builds the context given to `fn`. */
export interface AcquiredRun {
  key: string;
  token: number;
  attempt: number;
  resumed: boolean;
  /** Encoded step results; new steps are added as they are saved. */
  steps: Record<string, string>;
  lease: LeaseKeeper;
  /**
   * Set when a step's work ran but its result could not be stored: the run must then end
   * recorded as failed, since a retry would run that work again.
   */
  unstorable?: ResultNotStorableError;
}

/**
 * The context of a guarded run. Step names are unique per run: a second `step` with a
 * name already used in this run (completed, replayed or still running) throws
 * {@link InvalidArgumentError}, since silently returning the first result would hide a bug
 * such as charging in a loop under one name. A step whose `work` throws frees its name, so
 * the run may try it again.
 */
export function createContext(
  run: AcquiredRun,
  options: ResolvedOptions<unknown>,
): IdempotencyContext {
  return new GuardedContext(run, options);
}

/**
 * The decoded result of step `name` as stored by an earlier attempt of the operation, or
 * undefined: a look that neither claims the name nor counts a step. For the runtimes built on
 * the core (the consumer reads its own bookkeeping steps with it); not part of the public API.
 */
export function storedStepOf(ctx: IdempotencyContext, name: string): unknown {
  return ctx instanceof GuardedContext ? GuardedContext.storedStep(ctx, name) : undefined;
}

/**
 * `ctx.step` for a runtime's own bookkeeping step (one of `uncountedSteps`): it takes none of
 * the user's maxSteps or maxStepsBytes, and only this path may write it (the user's `ctx.step`
 * refuses those names). Not part of the public API.
 */
export function runtimeStep<T>(
  ctx: IdempotencyContext,
  name: string,
  work: () => T | Promise<T>,
): Promise<T> {
  return ctx instanceof GuardedContext
    ? GuardedContext.runtimeStep(ctx, name, work)
    : ctx.step(name, work);
}

/**
 * A class rather than an object literal: a literal with a getter (`signal`) is built through
 * a slow runtime path, measured at about 2.4 µs per run against 0.12 µs for this. `step` and
 * `keyFor` stay own arrow functions, so `const { step } = ctx` works as before; the state is
 * in private fields, so spreading or logging a context shows none of the internals.
 *
 * The two arrows are assigned in the constructor rather than written as field initializers:
 * a tool that keeps function names (tsx, esbuild's keepNames) wraps a named field's arrow in a
 * `defineProperty` call on every construction, which cost each run about 1 µs; an arrow
 * assigned to a member has no inferred name, so nothing wraps it.
 */
class GuardedContext implements IdempotencyContext {
  readonly key: string;
  readonly token: number;
  readonly attempt: number;
  readonly resumed: boolean;
  readonly step: <T>(name: string, work: () => T | Promise<T>) => Promise<T>;
  readonly keyFor: (name: string) => string;
  readonly #run: AcquiredRun;
  readonly #options: ResolvedOptions<unknown>;
  // Created by the first step: most operations have none.
  #used: Set<string> | undefined;
  // The names claimed inside the running step's work (created by the first step that runs).
  #within: AsyncLocalStorage<string[]> | undefined;
  // Counted by the first step that runs its work: the stored steps and those of this attempt
  // whose work ran or runs (as their names, they stay counted once their work ran), and the
  // UTF-8 bytes of the stored ones and of those being saved (maxSteps, maxStepsBytes).
  #count = -1;
  #bytes = 0;

  constructor(run: AcquiredRun, options: ResolvedOptions<unknown>) {
    this.key = run.key;
    this.token = run.token;
    this.attempt = run.attempt;
    this.resumed = run.resumed;
    this.#run = run;
    this.#options = options;
    this.step = (name, work) => this.#step(name, work);
    this.keyFor = (name) => deriveKey(run.key, checkStepName(name, 'keyFor name'));
  }

  get signal(): AbortSignal {
    return this.#run.lease.signal;
  }

  async #step<T>(name: string, work: () => T | Promise<T>, runtime = false): Promise<T> {
    const run = this.#run;
    const { store, codec, maxResultBytes, maxSteps, maxStepsBytes } = this.#options;
    checkStepName(name);
    refuseProtoName(name);
    // A runtime's bookkeeping steps are its own: a handler's step of that name would escape
    // the limits, and the runtime would read it as its own.
    const reserved = this.#options.uncountedSteps?.has(name) === true;
    if (reserved && !runtime) {
      throw new InvalidArgumentError(
        `step name "${name}" is reserved by the runtime; choose another name`,
      );
    }
    if (typeof work !== 'function') {
      throw new InvalidArgumentError(`step "${name}" needs a work function`);
    }
    this.#used ??= new Set();
    const used = this.#used;
    claim(used, name);
    // Claimed inside the work of an enclosing step: given back with it should that work throw.
    const enclosing = this.#within?.getStore();
    enclosing?.push(name);
    // Lost, or ended on this worker's own clock while the timer that would say so has not
    // fired yet (a stalled event loop): another worker may hold the operation now.
    if (run.lease.ended()) {
      used.delete(name);
      throw run.lease.endReason;
    }

    // Own members only: "constructor" or "toString" must not find Object.prototype's.
    const stored = Object.hasOwn(run.steps, name) ? run.steps[name] : undefined;
    if (stored !== undefined) {
      return decodeFromStore(codec, stored, `the stored result of step "${name}"`) as T;
    }

    // A runtime's own bookkeeping step takes none of the user's maxSteps or maxStepsBytes.
    const counted = !reserved;
    if (counted) {
      if (this.#count < 0) this.#measure();
      if (this.#count >= maxSteps) {
        used.delete(name);
        // Before the work: nothing ran, so nothing needs recording.
        throw new ResultNotStorableError(
          `step "${name}" cannot run: the operation already has ${this.#count} steps, maxSteps is ${maxSteps}`,
          undefined,
          ErrorCode.RESULT_TOO_LARGE,
        );
      }
      this.#count++;
    }
    let value: T;
    // The names the work's own steps claim: a work that throws frees them with its own name,
    // so that the run may try the step again, its nested steps replaying what they saved.
    const inner: string[] = [];
    this.#within ??= new AsyncLocalStorage();
    try {
      value = await this.#within.run(inner, work);
    } catch (error) {
      if (counted) this.#count--;
      used.delete(name);
      // Only those that settled and were saved (they replay): one still running keeps its
      // name, or a retry of this step would run its work a second time beside it.
      for (const nested of inner) if (Object.hasOwn(run.steps, nested)) used.delete(nested);
      throw error;
    }
    enclosing?.push(...inner);
    let encoded: string;
    let bytes: number;
    try {
      encoded = encodeForStore(codec, value, maxResultBytes, `the result of step "${name}"`);
      bytes = counted ? Buffer.byteLength(encoded, 'utf8') : 0;
      if (this.#bytes + bytes > maxStepsBytes) {
        throw new ResultNotStorableError(
          `the result of step "${name}" is too large to store: ${bytes} bytes encoded, and the operation's steps already take ${this.#bytes}, over maxStepsBytes (${maxStepsBytes})`,
          undefined,
          ErrorCode.RESULT_TOO_LARGE,
        );
      }
      // Taken now, before the save: steps running at once each count the others' bytes.
      this.#bytes += bytes;
    } catch (error) {
      run.unstorable ??= error as ResultNotStorableError;
      throw error;
    }
    let answer: unknown;
    try {
      answer = await store.saveStep(run.key, run.token, name, encoded);
    } catch (error) {
      this.#bytes -= bytes;
      const failure = storeFailure(store, 'saveStep', error);
      // Refused for its size by the store (DynamoDB's item limit): the work ran, so, as for a
      // result the codec refused, the run must end recorded as failed.
      if (isStoreRefusal(failure)) run.unstorable ??= failure;
      throw failure;
    }
    const saved = checkFenced(store, 'saveStep', answer);
    if (saved.kind === 'lease_lost') {
      this.#bytes -= bytes;
      const error = new LeaseLostError(
        `the lease was lost before step "${name}" could be saved; another worker holds the operation`,
      );
      run.lease.lose(error);
      throw error;
    }
    setStep(run.steps, name, encoded);
    return value;
  }

  /** See {@link storedStepOf}. (Static: nothing of it shows on a context.) */
  static runtimeStep<T>(ctx: GuardedContext, name: string, work: () => T | Promise<T>): Promise<T> {
    return ctx.#step(name, work, true);
  }

  static storedStep(ctx: GuardedContext, name: string): unknown {
    const run = ctx.#run;
    const stored = Object.hasOwn(run.steps, name) ? run.steps[name] : undefined;
    if (stored === undefined) return undefined;
    return decodeFromStore(ctx.#options.codec, stored, `the stored result of step "${name}"`);
  }

  /** Counts the steps stored by earlier attempts, and their bytes. */
  #measure(): void {
    let count = 0;
    let bytes = 0;
    const uncounted = this.#options.uncountedSteps;
    for (const name in this.#run.steps) {
      if (uncounted?.has(name)) continue;
      count++;
      bytes += Buffer.byteLength(this.#run.steps[name] as string, 'utf8');
    }
    this.#count = count;
    this.#bytes = bytes;
  }
}

/**
 * The context of an unguarded run (`required: false` and no key): steps run their work
 * directly and store nothing, `keyFor` derives keys from a random run id (stable within
 * the run, different on every run), and the signal never aborts.
 */
export function createUnguardedContext(): IdempotencyContext {
  const runKey = `unguarded:${randomUUID()}`;
  const used = new Set<string>();
  return {
    key: '',
    token: 0,
    attempt: 1,
    resumed: false,
    signal: new AbortController().signal,
    async step<T>(name: string, work: () => T | Promise<T>): Promise<T> {
      checkStepName(name);
      refuseProtoName(name);
      if (typeof work !== 'function') {
        throw new InvalidArgumentError(`step "${name}" needs a work function`);
      }
      claim(used, name);
      try {
        return await work();
      } catch (error) {
        used.delete(name);
        throw error;
      }
    },
    keyFor(name: string): string {
      return deriveKey(runKey, checkStepName(name, 'keyFor name'));
    },
  };
}

/**
 * A store that rebuilds the steps by assigning members (a third-party one; the bundled stores
 * define them, and the conformance suite checks it) would drop a `__proto__` member on the way
 * back, and such a step would run again on the next attempt: refuse the name up front.
 */
function refuseProtoName(name: string): void {
  if (name === '__proto__') {
    throw new InvalidArgumentError('step name must not be "__proto__"; choose another name');
  }
}

function claim(used: Set<string>, name: string): void {
  if (used.has(name)) {
    throw new InvalidArgumentError(
      `step "${name}" was already used in this run; give every step of an operation its own name`,
    );
  }
  used.add(name);
}
