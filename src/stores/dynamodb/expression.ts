import type { AttributeValue } from '@aws-sdk/client-dynamodb';

/** The expressions of one request, written with `#name` and `:value` placeholders. */
export interface ExpressionParts {
  condition?: string;
  update?: string;
  filter?: string;
  projection?: string;
  /** Placeholders whose attribute name is not the placeholder's own text (`#step` → `s:…`). */
  names?: Record<string, string>;
  values?: Record<string, AttributeValue>;
}

/** The expression fields of a DynamoDB request, ready to spread into its input. */
export interface ExpressionInput {
  ConditionExpression?: string;
  UpdateExpression?: string;
  FilterExpression?: string;
  ProjectionExpression?: string;
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Record<string, AttributeValue>;
}

/**
 * Builds the expression fields of a request. Every attribute is written `#name` (several of
 * ours are reserved words); `#name` stands for the attribute `name` unless `names` says
 * otherwise. Only the names and values an expression uses are sent: DynamoDB rejects unused ones.
 */
export function expression(parts: ExpressionParts): ExpressionInput {
  const texts = [parts.condition, parts.update, parts.filter, parts.projection]
    .filter((t): t is string => t !== undefined)
    .join(' ');
  const out: ExpressionInput = {};
  if (parts.condition !== undefined) out.ConditionExpression = parts.condition;
  if (parts.update !== undefined) out.UpdateExpression = parts.update;
  if (parts.filter !== undefined) out.FilterExpression = parts.filter;
  if (parts.projection !== undefined) out.ProjectionExpression = parts.projection;
  const names: Record<string, string> = {};
  for (const [placeholder] of texts.matchAll(/#\w+/g)) {
    names[placeholder] = parts.names?.[placeholder] ?? placeholder.slice(1);
  }
  if (Object.keys(names).length > 0) out.ExpressionAttributeNames = names;
  const values: Record<string, AttributeValue> = {};
  for (const [placeholder] of texts.matchAll(/:\w+/g)) {
    const value = parts.values?.[placeholder];
    if (value === undefined) throw new Error(`expression value ${placeholder} is not given`);
    values[placeholder] = value;
  }
  if (Object.keys(values).length > 0) out.ExpressionAttributeValues = values;
  return out;
}
