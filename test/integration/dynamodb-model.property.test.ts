/**
 * Model-based property test of the DynamoDB store on dynalite: random sequences of begin,
 * races, complete, fail, release, heartbeat, saveStep, delete, purge and clock moves, run
 * against the store and against the reference model (test/stores/reference-store.ts) on the
 * same fake clock. After every command both must agree on the result and on every record.
 *
 * Tokens are compared by the acquisition that issued them (the store's numbers differ from the
 * model's, their order must not), and tokens must strictly increase per key. Durations end in
 * 3 or 7 ms while the clock moves in steps of 10 ms, so no command lands on a boundary.
 */
import { DeleteTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdempotencyRecord, IdempotencyStore } from '../../src/idempotency/store.js';
import { createDynamoDbStore } from '../../src/stores/dynamodb/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { type Dynalite, startDynalite } from '../helpers/dynalite.js';
import { RUN_ID } from '../helpers/services.js';
import { ReferenceStore } from '../stores/reference-store.js';

const KEYS = ['key-a', 'key-b'];
const FINGERPRINTS = ['fp-1', 'fp-2'];
const LEASES = [1007, 3007];
const TTLS = [2003, 5003, 20_003];
const WORKERS = 3;

type Command =
  | { op: 'begin'; worker: number; key: number; fp: number; lease: number; ttl: number }
  | { op: 'race'; workers: number[]; key: number; fp: number }
  | { op: 'complete' | 'fail'; worker: number; key: number; value: string; ttl: number }
  | { op: 'release'; worker: number; key: number }
  | { op: 'heartbeat'; worker: number; key: number; lease: number }
  | { op: 'saveStep'; worker: number; key: number; name: string; value: string }
  | { op: 'advance'; ms: number }
  | { op: 'delete'; key: number }
  | { op: 'purge' };

const worker = fc.integer({ min: 0, max: WORKERS - 1 });
const key = fc.integer({ min: 0, max: KEYS.length - 1 });
const fp = fc.integer({ min: 0, max: FINGERPRINTS.length - 1 });
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('begin' as const),
      worker,
      key,
      fp,
      lease: fc.constantFrom(...LEASES),
      ttl: fc.constantFrom(...TTLS),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('race' as const),
      workers: fc.uniqueArray(worker, { minLength: 2, maxLength: WORKERS }),
      key,
      fp,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('complete' as const, 'fail' as const),
      worker,
      key,
      value: fc.constantFrom('"a"', '{"b":1}', ''),
      ttl: fc.constantFrom(...TTLS),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('release' as const), worker, key }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('heartbeat' as const),
      worker,
      key,
      lease: fc.constantFrom(...LEASES),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('saveStep' as const),
      worker,
      key,
      name: fc.constantFrom('charge', 'email', ''),
      value: fc.constantFrom('"x"', '"y"', ''),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      ms: fc.integer({ min: 1, max: 300 }).map((n) => n * 10),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('purge' as const) }) },
);

/** A store under test with the tokens its workers hold, named by acquisition number. */
class Side {
  private readonly ids = new Map<string, number>();
  private acquisitions = 0;
  private readonly latest = new Map<string, number>();
  constructor(readonly store: IdempotencyStore) {}

  /** The latest token of a worker on a key; 1 (never issued) for a worker that has none. */
  token(worker: number, key: number): number {
    return this.latest.get(`${worker}/${key}`) ?? 1;
  }

  acquired(worker: number, key: number, token: number): number {
    this.ids.set(`${KEYS[key]}/${token}`, ++this.acquisitions);
    this.latest.set(`${worker}/${key}`, token);
    return this.acquisitions;
  }

  record(record: IdempotencyRecord | undefined): unknown {
    return record && { ...record, token: this.ids.get(`${record.key}/${record.token}`) ?? -1 };
  }
}

async function apply(side: Side, cmd: Command, lastToken?: Map<string, number>) {
  const { store } = side;
  const k = (i: number) => KEYS[i] as string;
  switch (cmd.op) {
    case 'begin':
    case 'race': {
      const workers = cmd.op === 'begin' ? [cmd.worker] : cmd.workers;
      const lease = cmd.op === 'begin' ? cmd.lease : (LEASES[0] as number);
      const ttl = cmd.op === 'begin' ? cmd.ttl : (TTLS[1] as number);
      const results = await Promise.all(
        workers.map(() => store.begin(k(cmd.key), FINGERPRINTS[cmd.fp] as string, lease, ttl)),
      );
      const out: unknown[] = [];
      for (const [i, result] of results.entries()) {
        if (result.kind === 'existing') {
          out.push({ kind: 'existing', record: side.record(result.record) });
          continue;
        }
        if (lastToken) {
          expect(result.token).toBeGreaterThan(lastToken.get(k(cmd.key)) ?? 0);
          lastToken.set(k(cmd.key), result.token);
        }
        out.push({ ...result, token: side.acquired(workers[i] as number, cmd.key, result.token) });
      }
      expect(results.filter((r) => r.kind === 'acquired').length).toBeLessThanOrEqual(1);
      return out;
    }
    case 'complete':
    case 'fail':
      return store[cmd.op](k(cmd.key), side.token(cmd.worker, cmd.key), cmd.value, cmd.ttl);
    case 'release':
      return store.release(k(cmd.key), side.token(cmd.worker, cmd.key));
    case 'heartbeat':
      return store.heartbeat(k(cmd.key), side.token(cmd.worker, cmd.key), cmd.lease);
    case 'saveStep':
      return store.saveStep(k(cmd.key), side.token(cmd.worker, cmd.key), cmd.name, cmd.value);
    case 'advance':
      return undefined;
    case 'delete':
      return store.delete(k(cmd.key));
    case 'purge':
      return store.purgeExpired();
  }
}

describe('dynamodb store against the reference model (property, dynalite)', () => {
  let dynalite: Dynalite;
  let client: DynamoDBClient;
  let tables = 0;
  beforeAll(async () => {
    dynalite = await startDynalite();
    client = dynalite.client();
  });
  afterAll(async () => {
    client?.destroy();
    await dynalite?.close();
  });

  it('behaves like the model on random command sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 30 }), async (commands) => {
        const clock = new FakeClock();
        const table = `${RUN_ID}_model${++tables}`;
        const store = createDynamoDbStore(client, { table, clock });
        await store.createTable();
        try {
          const real = new Side(store);
          const model = new Side(new ReferenceStore(clock));
          const lastToken = new Map<string, number>();
          for (const [step, cmd] of commands.entries()) {
            if (cmd.op === 'advance') clock.set(clock.now() + cmd.ms);
            const expected = await apply(model, cmd);
            const actual = await apply(real, cmd, lastToken);
            expect(actual, `step ${step}: ${JSON.stringify(cmd)}`).toEqual(expected);
            for (const name of KEYS) {
              expect(real.record(await store.get(name)), `${name} after step ${step}`).toEqual(
                model.record(await model.store.get(name)),
              );
            }
          }
          const byKey = (a: { key: string }, b: { key: string }) => a.key.localeCompare(b.key);
          const listed = (await store.list()).records.sort(byKey).map((r) => real.record(r));
          const modelListed = (await model.store.list()).records.map((r) => model.record(r));
          expect(listed).toEqual(modelListed);
        } finally {
          await client.send(new DeleteTableCommand({ TableName: table }));
        }
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
