export * from './api/index.js';
export * from './sqs/index.js';
