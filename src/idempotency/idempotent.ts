import { IdempotencyKeyMissingError, InvalidArgumentError } from '../errors.js';
import { createUnguardedContext } from './context.js';
import { type ResolvedIdentity, executeHashed } from './execute.js';
import { fingerprintOf, scopedKeyHasher } from './hash.js';
import { describeType, keyReader, parsePath, readPath, validateKey } from './key.js';
import { checkOptionNames, optionNames } from '../option-names.js';
import { BASE_OPTIONS, resolveOptions } from './options.js';
import type {
  FingerprintSource,
  IdempotencyContext,
  IdempotencyOptions,
  IdempotentFunction,
  Outcome,
  ScopeOptions,
} from './types.js';

const IDEMPOTENT_OPTIONS = optionNames<IdempotencyOptions<unknown>>({
  ...BASE_OPTIONS,
  key: true,
  scope: true,
  fingerprint: true,
  required: true,
});

/**
 * Wraps `fn` so that a repeat of the same operation returns the first outcome instead of
 * running `fn` again. The operation identity is the scope (operation name and optional
 * principal) plus the key read from the input; the fingerprint (by default the whole input)
 * must match on a repeat. Options are checked here, once: a bad option throws
 * {@link InvalidArgumentError} at wrap time, not at the first call.
 *
 * The returned function has `fn`'s input and output; `.run(input)` also tells a fresh run
 * from a replay ({@link Outcome}).
 *
 * With `required: false`, an input without a key (undefined or null) runs `fn` unguarded:
 * nothing is stored, steps run their work directly, and the outcome says `unguarded: true`.
 *
 * @example
 * const charge = idempotent(async (req: ChargeRequest, ctx) => {
 *   const payment = await ctx.step('charge', () => psp.charge(req.amount, ctx.keyFor('charge')));
 *   return ctx.step('order', () => orders.create(req, payment.id));
 * }, { store, key: 'requestId', scope: 'charge' });
 */
export function idempotent<I, O>(
  fn: (input: I, ctx: IdempotencyContext) => Promise<O> | O,
  options: IdempotencyOptions<I>,
): IdempotentFunction<I, O> {
  if (typeof fn !== 'function') {
    throw new InvalidArgumentError(
      `idempotent() needs a function to wrap, got ${describeType(fn)}`,
    );
  }
  if (typeof options === 'object' && options !== null) {
    checkOptionNames('idempotent()', options, IDEMPOTENT_OPTIONS);
  }
  const resolved = resolveOptions<O>(options);
  if (options.key === undefined) {
    throw new InvalidArgumentError(
      'idempotency option "key" is required: a field path such as "requestId" or a function',
    );
  }
  const readKey = keyReader(options.key);
  const keyName =
    typeof options.key === 'string' ? `idempotency key "${options.key}"` : 'idempotency key';
  const scope = scopeReader(options.scope);
  const selectFingerprint = fingerprintSelector(options.fingerprint);
  const required = options.required ?? true;
  if (typeof required !== 'boolean') {
    throw new InvalidArgumentError(`required must be a boolean, got ${describeType(required)}`);
  }

  // Not async, nor is the wrapper below: each async frame around the state machine cost every
  // call a few microtask turns (measured ~0.3-0.5 µs). Errors before the state machine starts
  // still reject rather than throw.
  function runIdempotent(input: I): Promise<Outcome<O>> {
    let identity: ResolvedIdentity;
    try {
      const rawKey = readKey(input);
      if (rawKey === undefined || rawKey === null) {
        if (required) {
          throw new IdempotencyKeyMissingError(`${keyName} is required but the input has none`);
        }
        return runUnguarded(input);
      }
      const hashKeyOf = scope(input);
      const key = hashKeyOf(validateKey(rawKey, keyName));
      // A selection that comes out undefined is still fingerprinted (as null), so a missing
      // field never turns the check off.
      const fingerprint =
        selectFingerprint === undefined ? '' : fingerprintOf(selectFingerprint(input) ?? null);
      identity = { key, fingerprint };
    } catch (error) {
      return Promise.reject(error);
    }
    return executeHashed(identity, (ctx) => fn(input, ctx), resolved);
  }

  async function runUnguarded(input: I): Promise<Outcome<O>> {
    const value = await fn(input, createUnguardedContext());
    return { value, replayed: false, key: '', unguarded: true };
  }

  const call = function idempotentCall(input: I): Promise<O> {
    return runIdempotent(input).then(outcomeValue);
  };
  Object.defineProperty(call, 'name', { value: `idempotent ${fn.name || 'anonymous'}` });
  return Object.assign(call, { run: runIdempotent });
}

function outcomeValue<O>(outcome: Outcome<O>): O {
  return outcome.value;
}

/**
 * The scope, checked once, as a function from an input to the hasher of its keys. A fixed
 * scope has one hasher, built here; only a principal read from the input needs one per call.
 */
function scopeReader<I>(scope: string | ScopeOptions<I>): (input: I) => (key: string) => string {
  if (typeof scope === 'string') {
    if (scope.length === 0) throw new InvalidArgumentError('scope must not be an empty string');
    const fixed = scopedKeyHasher(scope, undefined);
    return () => fixed;
  }
  if (typeof scope !== 'object' || scope === null) {
    throw new InvalidArgumentError(
      `idempotency option "scope" is required: an operation name or { operation, principal? }, got ${describeType(scope)}`,
    );
  }
  const { operation, principal } = scope;
  if (typeof operation !== 'string' || operation.length === 0) {
    throw new InvalidArgumentError(
      `scope.operation must be a non-empty string, got ${JSON.stringify(operation)}`,
    );
  }
  if (principal === undefined) {
    const fixed = scopedKeyHasher(operation, undefined);
    return () => fixed;
  }
  if (typeof principal === 'string') {
    if (principal.length === 0) {
      throw new InvalidArgumentError('scope.principal must not be an empty string');
    }
    const fixed = scopedKeyHasher(operation, principal);
    return () => fixed;
  }
  if (typeof principal !== 'function') {
    throw new InvalidArgumentError(
      `scope.principal must be a string or a function (input) => string | undefined, got ${describeType(principal)}`,
    );
  }
  const withoutPrincipal = scopedKeyHasher(operation, undefined);
  return (input) => {
    const who = principal(input);
    if (who === undefined) return withoutPrincipal;
    if (typeof who !== 'string' || who.length === 0) {
      throw new InvalidArgumentError(
        `scope.principal(input) must return a non-empty string or undefined, got ${JSON.stringify(who)}`,
      );
    }
    return scopedKeyHasher(operation, who);
  };
}

/** The selector of the fingerprinted input, or undefined when fingerprinting is off. */
function fingerprintSelector<I>(
  source: FingerprintSource<I> | undefined,
): ((input: I) => unknown) | undefined {
  if (source === undefined) return (input) => input;
  if (source === false) return undefined;
  if (typeof source === 'function') return source;
  if (typeof source === 'string') {
    const segments = parsePath(source, 'fingerprint');
    return (input) => readPath(input, segments);
  }
  if (Array.isArray(source)) {
    if (source.length === 0) {
      throw new InvalidArgumentError('fingerprint paths must not be empty (use false to skip)');
    }
    const paths = source.map((path: unknown) => {
      if (typeof path !== 'string') {
        throw new InvalidArgumentError(
          `fingerprint paths must be strings, got ${describeType(path)}`,
        );
      }
      return [path, parsePath(path, 'fingerprint path')] as const;
    });
    return (input) =>
      Object.fromEntries(
        paths.map(([path, segments]) => [path, readPath(input, segments) ?? null]),
      );
  }
  throw new InvalidArgumentError(
    `fingerprint must be false, a field path, an array of paths or a function, got ${describeType(source)}`,
  );
}
