import { RUN_ID, describeWithService } from '../helpers/services.js';
import { describePostgresConformance } from './fixtures/sql-pg-conformance.js';

// The store conformance suite on the real PostgreSQL with batching off: one statement per call
// (postgres-store-batched.test.ts runs it batched, the default).
await describeWithService('postgres', 'postgres store', () => {
  describePostgresConformance('postgres', `${RUN_ID}_pgc`, { batch: false });
});
