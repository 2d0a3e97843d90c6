import { RUN_ID, describeWithService } from '../helpers/services.js';
import { describeMysqlConformance } from './fixtures/sql-mysql-conformance.js';

/*
 * The store conformance suite on the real MariaDB with batching on: concurrent begin,
 * complete and fail calls share statements (small batches, so the race case mixes batches and
 * keys repeated across batches).
 */
await describeWithService('mariadb', 'mysql store, batched', () => {
  describeMysqlConformance('mysql (batched)', `${RUN_ID}_mycb`, {
    batch: { maxBatchSize: 16, maxInFlight: 2 },
  });
});
