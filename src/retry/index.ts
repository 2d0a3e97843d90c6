export { defaultClassifier, isRetryable, parseRetryAfter, retryAfterMs } from './classify.js';
