import { InvalidArgumentError } from './errors.js';

/**
 * The option names of an options type, listed once as `{ name: true, ... }`. The type checks
 * that the list is exactly the type's keys, optional ones included: an option added to the
 * interface and not here fails to compile, so the check below never refuses a real option.
 */
export function optionNames<T>(names: Record<keyof T, true>): ReadonlySet<string> {
  return new Set(Object.keys(names));
}

/**
 * Throws {@link InvalidArgumentError} for an option `what` does not know (a misspelt
 * `onDuplicte` would otherwise be ignored, and its default used without a word).
 */
export function checkOptionNames(what: string, options: object, known: ReadonlySet<string>): void {
  for (const name of Object.keys(options)) {
    if (!known.has(name)) {
      throw new InvalidArgumentError(
        `${what}: unknown option ${JSON.stringify(name)}; the options are ${[...known].join(', ')}`,
      );
    }
  }
}
