import type pg from 'pg';
import { InvalidArgumentError } from '../src/errors.js';

/*
 * The business database of the chaos run: the rows the handlers' effects write, in
 * PostgreSQL, in a schema of the run's own.
 *
 * `effects` has NO unique constraint (not even a primary key): a second execution of an
 * effect shows up as a second row, which is what the invariant checker counts.
 *
 * Why the effect is safe anyway, in two layers:
 * - the idempotency record and its steps stop RE-EXECUTION: a redelivery of a completed
 *   message replays, and a retry resumes after the last saved step;
 * - the fence AT THE RESOURCE stops the ZOMBIE and closes the last window. A worker whose
 *   lease ended while it stalled still holds a token; one that crashed between the effect's
 *   INSERT and the step's saveStep left a row behind. So each effect is written in one
 *   transaction that (1) raises the operation's fence to the writer's fencing token, refusing
 *   a stale token (a newer holder has written: the stale write touches 0 rows and aborts),
 *   and (2) inserts the row only if no row with the effect's key (`ctx.keyFor(step)`) exists.
 *   The fence row lock also serialises two writers of one operation, so the NOT EXISTS of
 *   the second sees the first's committed row (READ COMMITTED takes a new snapshot per
 *   statement).
 *
 * This is how trusted systems fence a lock holder (the storage checks the token, not the
 * client): a lease is only advice to the holder, the resource is where the check must be.
 */

/** One effect to write: which message (or HTTP operation), which step, who writes it. */
export interface EffectWrite {
  phase: string;
  messageId: string;
  step: string;
  worker: string;
  /** When the begin that guards this run was answered (epoch ms); undefined when unguarded. */
  guardedSince?: number | undefined;
}

/** What a fenced write did. */
export type FencedOutcome =
  /** The row was inserted. */
  | 'written'
  /** The row existed already (a re-execution after a crash or a timeout): nothing written. */
  | 'absorbed'
  /** A newer token had written: this holder's lease is gone, nothing written. */
  | 'fenced';

/** The identity a fenced write needs from the idempotency context. */
export interface FenceIdentity {
  /** The operation's stored key (`ctx.key`): one fence per operation. */
  operation: string;
  /** The fencing token of this acquisition (`ctx.token`). */
  token: number;
  /** The effect's own key (`ctx.keyFor(step)`). */
  effectKey: string;
}

/** Checks a schema name made by the run (letters, digits, underscores) and quotes it. */
export function quoteSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new InvalidArgumentError(`not a schema name this run makes: ${JSON.stringify(schema)}`);
  }
  return `"${schema}"`;
}

/** Creates the run's schema with its `effects` and `fences` tables. */
export async function createEffectsSchema(db: pg.Pool, schema: string): Promise<void> {
  const s = quoteSchema(schema);
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.effects (
  id          bigint GENERATED ALWAYS AS IDENTITY,
  phase       text   NOT NULL,
  message_id  text   NOT NULL,
  step        text   NOT NULL,
  effect_key  text   NOT NULL,
  token       bigint NOT NULL,
  worker      text   NOT NULL,
  guarded_since bigint,
  written_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE ${s}.effects IS 'chaos run effects: deliberately without any unique constraint';
CREATE INDEX IF NOT EXISTS effects_effect_key ON ${s}.effects (effect_key);
CREATE INDEX IF NOT EXISTS effects_message ON ${s}.effects (phase, step, message_id);
CREATE TABLE IF NOT EXISTS ${s}.fences (
  key   text PRIMARY KEY,
  token bigint NOT NULL
);`);
}

/** Drops the run's schema and everything in it. */
export async function dropSchema(db: pg.Pool, schema: string): Promise<void> {
  await db.query(`DROP SCHEMA IF EXISTS ${quoteSchema(schema)} CASCADE`);
}

/** Writes effects for one process: fenced (with idempotency) or plain (the baseline). */
export interface EffectWriter {
  fenced(identity: FenceIdentity, write: EffectWrite): Promise<FencedOutcome>;
  plain(write: EffectWrite): Promise<void>;
}

/** An {@link EffectWriter} on `db` (a pool straight to PostgreSQL, not through any relay). */
export function createEffectWriter(db: pg.Pool, schema: string): EffectWriter {
  const s = quoteSchema(schema);
  // A newer or equal token raises the fence; a stale one updates nothing (0 rows).
  const raiseFence = `INSERT INTO ${s}.fences (key, token) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token WHERE ${s}.fences.token <= EXCLUDED.token`;
  const insertOnce = `INSERT INTO ${s}.effects (phase, message_id, step, effect_key, token, worker, guarded_since)
SELECT $1, $2, $3, $4, $5, $6, $7
WHERE NOT EXISTS (SELECT 1 FROM ${s}.effects WHERE effect_key = $4)`;
  const insertPlain = `INSERT INTO ${s}.effects (phase, message_id, step, effect_key, token, worker, guarded_since)
VALUES ($1, $2, $3, $4, 0, $5, NULL)`;

  return {
    async fenced(identity, write) {
      const client = await db.connect();
      let open = false;
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        open = true;
        const fence = await client.query(raiseFence, [identity.operation, identity.token]);
        if (fence.rowCount === 0) {
          await client.query('ROLLBACK');
          open = false;
          return 'fenced';
        }
        const inserted = await client.query(insertOnce, [
          write.phase,
          write.messageId,
          write.step,
          identity.effectKey,
          identity.token,
          write.worker,
          write.guardedSince ?? null,
        ]);
        await client.query('COMMIT');
        open = false;
        return inserted.rowCount === 1 ? 'written' : 'absorbed';
      } catch (error) {
        if (open) {
          await client.query('ROLLBACK').catch((rollbackError: unknown) => {
            // The connection itself failed: do not give it back to the pool.
            broken =
              rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
          });
        }
        throw error;
      } finally {
        client.release(broken);
      }
    },

    async plain(write) {
      await db.query(insertPlain, [
        write.phase,
        write.messageId,
        write.step,
        `${write.phase}:${write.messageId}:${write.step}`,
        write.worker,
      ]);
    },
  };
}
