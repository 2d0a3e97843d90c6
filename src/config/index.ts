export {
  IDEMPOTENCY_CONFIG_DEFAULTS,
  type IdempotencySettings,
  budgetFromConfig,
  idempotencySettingsFromConfig,
  retryOptionsFromConfig,
} from './from-config.js';
export { loadConfig, parseConfig, parseConfigText } from './load-config.js';
export {
  BACKOFF_VALUES,
  BUDGET_TYPES,
  JITTER_VALUES,
  ON_DUPLICATE_VALUES,
  ON_IN_PROGRESS_VALUES,
  PROFILE_VALUES,
} from './schema.js';
export { STORE_FORMS, type StoreSpec, parseStoreSpec, tryParseStoreSpec } from './store-spec.js';
export type {
  BudgetConfig,
  IdempotencyConfig,
  ReprocessConfig,
  RetryPolicyConfig,
} from './types.js';
