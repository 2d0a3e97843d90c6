import { RUN_ID, describeWithService } from '../helpers/services.js';
import { describeMysqlConformance } from './fixtures/sql-mysql-conformance.js';

// The store conformance suite on the real MariaDB on 127.0.0.1 with batching off: one statement
// per call (mysql-store-batched.test.ts runs it batched, the default).
await describeWithService('mariadb', 'mysql store', () => {
  describeMysqlConformance('mysql', `${RUN_ID}_myc`, { batch: false });
});
