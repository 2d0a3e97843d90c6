import { RUN_ID, describeWithService } from '../helpers/services.js';
import { describePostgresConformance } from './fixtures/sql-pg-conformance.js';

// The store conformance suite on the real PostgreSQL: one statement per call.
await describeWithService('postgres', 'postgres store', () => {
  describePostgresConformance('postgres', `${RUN_ID}_pgc`, {});
});
