/**
 * A bad argument as an error message shows it: a string quoted (or only its length, past 80
 * characters, so a huge or secret value is not copied into logs), a number, null or undefined
 * as is, anything else by its type.
 */
export function showValue(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > 80 ? `a string of ${value.length} characters` : JSON.stringify(value);
  }
  return typeof value === 'number' || value === null || value === undefined
    ? String(value)
    : typeof value;
}
