import { RUN_ID, describeWithService } from '../helpers/services.js';
import { describePostgresConformance } from './fixtures/sql-pg-conformance.js';

/*
 * The store conformance suite on the real PostgreSQL with batching on: concurrent begin and
 * complete calls share statements (small batches, so the race case mixes batches and keys
 * repeated across batches).
 */
await describeWithService('postgres', 'postgres store, batched', () => {
  describePostgresConformance('postgres (batched)', `${RUN_ID}_pgb`, {
    batch: { maxBatchSize: 16, maxInFlight: 2 },
  });
});
