/**
 * Sets step `name` of `steps` to `result` as an own, enumerable member. Defined, not assigned:
 * `steps[name] = result` with a name such as `__proto__` would set the object's prototype and
 * store no member at all, and a step name is the caller's text.
 */
export function setStep(steps: Record<string, string>, name: string, result: string): void {
  Object.defineProperty(steps, name, {
    value: result,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}
