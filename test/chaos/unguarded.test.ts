/**
 * The chaos run's "no handler ran unguarded" check, on made-up effect rows in a real
 * PostgreSQL schema: a row counts against the store when it has no guarding begin, or when
 * that begin was answered while the store was unreachable (past the first ANSWER_SLACK_MS).
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEffectWriter, createEffectsSchema, dropSchema } from '../../chaos/effects-db.js';
import { ANSWER_SLACK_MS, countUnguarded } from '../../chaos/invariants.js';
import { RUN_ID, SERVICES, describeWithService } from '../helpers/services.js';

await describeWithService('postgres', 'chaos: unguarded effects', () => {
  const db = new pg.Pool({ connectionString: SERVICES.postgres.url, max: 2 });
  const schema = `${RUN_ID}_unguarded`;
  beforeAll(async () => {
    await createEffectsSchema(db, schema);
  });
  afterAll(async () => {
    await dropSchema(db, schema);
    await db.end();
  });

  it('counts effects without a begin, and effects whose begin was answered during an outage', async () => {
    const writer = createEffectWriter(db, schema);
    const outage = { phase: 'amqp', start: 10_000, end: 12_500 };
    const write = (id: string, guardedSince: number | undefined, token = 1) =>
      writer.fenced(
        { operation: id, token, effectKey: `${id}:charge` },
        { phase: 'amqp', messageId: id, step: 'charge', worker: 'w0', guardedSince },
      );
    // Answered before the outage, in its first moments (an answer already on its way), and
    // after it: all guarded.
    await write('before', outage.start - 1);
    await write('cut', outage.start + ANSWER_SLACK_MS - 1);
    await write('after', outage.end);
    expect(await countUnguarded(db, schema, [outage])).toEqual({
      withoutLease: 0,
      duringOutage: 0,
    });
    // Answered while the store could not answer: a store that let the run go unguarded.
    await write('inside', outage.start + ANSWER_SLACK_MS);
    await write('late-inside', outage.end - 1);
    expect(await countUnguarded(db, schema, [outage])).toEqual({
      withoutLease: 0,
      duringOutage: 2,
    });
    // An effect written without idempotency at all.
    await writer.plain({ phase: 'amqp', messageId: 'bare', step: 'charge', worker: 'w0' });
    expect(await countUnguarded(db, schema, [outage])).toEqual({
      withoutLease: 1,
      duringOutage: 2,
    });
  });
});
