/**
 * Model-based test of the store contract: random sequences of begin, complete, fail, release,
 * heartbeat, saveStep, races, deletes, purges and clock moves from several workers, run
 * against a real store and the reference model (reference-store.ts) side by side. After every
 * command the two must agree (results and the stored record), and the real store must keep
 * the invariants on its own: at most one worker holds a live lease on a key, a completed
 * record never changes until it expires or is deleted, and tokens strictly increase per key.
 *
 * Tokens are compared by the acquisition that issued them, not by value: stores may choose
 * different numbers (a per-key or a global high-water mark), as long as they order the same.
 * Durations end in 3 or 7 ms while the clock moves in steps of 10 ms, so no command lands
 * exactly on a lease or expiry boundary, which the contract leaves open.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { IdempotencyRecord, IdempotencyStore } from '../../src/idempotency/store.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { createSqliteStore } from '../../src/stores/sqlite/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { ReferenceStore } from './reference-store.js';

const WORKERS = 3;
const KEYS = ['key-a', 'key-b'];
const FINGERPRINTS = ['fp-1', 'fp-2'];
const LEASES = [1007, 3007];
const TTLS = [2003, 5003, 20_003];

type Which = 'latest' | 'first';
type Command =
  | { op: 'begin'; worker: number; key: number; fp: number; lease: number; ttl: number }
  | { op: 'race'; workers: number[]; key: number; fp: number }
  | {
      op: 'complete' | 'fail';
      worker: number;
      key: number;
      which: Which;
      value: string;
      ttl: number;
    }
  | { op: 'release'; worker: number; key: number; which: Which; ttl: number | undefined }
  | { op: 'heartbeat'; worker: number; key: number; which: Which; lease: number }
  | { op: 'saveStep'; worker: number; key: number; which: Which; name: string; value: string }
  | { op: 'advance'; ms: number }
  | { op: 'delete'; key: number }
  | { op: 'purge' };

const worker = fc.integer({ min: 0, max: WORKERS - 1 });
const key = fc.integer({ min: 0, max: KEYS.length - 1 });
const which = fc.constantFrom<Which>('latest', 'latest', 'latest', 'first');
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('begin' as const),
      worker,
      key,
      fp: fc.integer({ min: 0, max: FINGERPRINTS.length - 1 }),
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
      fp: fc.integer({ min: 0, max: FINGERPRINTS.length - 1 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('complete' as const, 'fail' as const),
      worker,
      key,
      which,
      value: fc.constantFrom('"a"', '{"b":1}', ''),
      ttl: fc.constantFrom(...TTLS),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('release' as const),
      worker,
      key,
      which,
      ttl: fc.constantFrom(undefined, ...TTLS),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('heartbeat' as const),
      worker,
      key,
      which,
      lease: fc.constantFrom(...LEASES),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('saveStep' as const),
      worker,
      key,
      which,
      name: fc.constantFrom('charge', 'email', 'ship'),
      value: fc.constantFrom('"x"', '"y"', '1'),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      ms: fc.integer({ min: 1, max: 800 }).map((n) => n * 10),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('purge' as const) }) },
);

/** One store under the model's eye, with the tokens its workers hold. */
class Side {
  /** Acquisition number of each token this store issued, by key and token (a per-key store may repeat a token on another key). */
  private readonly ids = new Map<string, number>();
  private acquisitions = 0;
  /** Tokens per worker and key: the first and the latest this worker acquired. */
  private readonly held = new Map<string, { first: number; latest: number }>();

  constructor(readonly store: IdempotencyStore) {}

  token(worker: number, key: number, which: Which): number {
    const tokens = this.held.get(`${worker}/${key}`);
    // 1 is never issued (tokens start at the clock in microseconds): a worker without a token.
    return tokens?.[which] ?? 1;
  }

  acquired(worker: number, key: number, token: number): number {
    const id = ++this.acquisitions;
    this.ids.set(`${KEYS[key]}/${token}`, id);
    const slot = `${worker}/${key}`;
    const tokens = this.held.get(slot);
    this.held.set(slot, { first: tokens?.first ?? token, latest: token });
    return id;
  }

  record(record: IdempotencyRecord | undefined): unknown {
    return (
      record && {
        ...record,
        token: this.ids.get(`${record.key}/${record.token}`) ?? `unknown ${record.token}`,
      }
    );
  }
}

interface Invariants {
  /** Greatest token the store issued per key. */
  lastToken: Map<string, number>;
  /** Completed records as first seen, per key, until they expire or are deleted. */
  completed: Map<string, IdempotencyRecord>;
}

/** Runs one command on one side; returns a result comparable across sides. */
async function apply(
  side: Side,
  cmd: Command,
  clock: FakeClock,
  inv?: Invariants,
): Promise<unknown> {
  const { store } = side;
  switch (cmd.op) {
    case 'begin':
    case 'race': {
      const workers = cmd.op === 'begin' ? [cmd.worker] : cmd.workers;
      const lease = cmd.op === 'begin' ? cmd.lease : (LEASES[0] ?? 1007);
      const ttl = cmd.op === 'begin' ? cmd.ttl : (TTLS[0] ?? 5003);
      const k = KEYS[cmd.key] as string;
      const before = inv && (await store.get(k));
      const results = await Promise.all(
        workers.map(() => store.begin(k, FINGERPRINTS[cmd.fp] as string, lease, ttl)),
      );
      const out: unknown[] = [];
      let winners = 0;
      for (const [i, result] of results.entries()) {
        const w = workers[i] as number;
        if (result.kind === 'existing') {
          out.push({ kind: 'existing', record: side.record(result.record) });
          continue;
        }
        winners++;
        if (inv) {
          const now = clock.now();
          // Nobody else held a live lease at the moment of acquisition.
          const live =
            before?.status === 'in_progress' && before.leaseUntil > now && before.expiresAt > now;
          expect(live, `acquired ${k} while a lease was live`).toBe(false);
          expect(result.token).toBeGreaterThan(inv.lastToken.get(k) ?? 0);
          inv.lastToken.set(k, result.token);
        }
        out.push({ ...result, token: side.acquired(w, cmd.key, result.token) });
      }
      expect(winners).toBeLessThanOrEqual(1);
      return out;
    }
    case 'complete':
    case 'fail':
      return store[cmd.op](
        KEYS[cmd.key] as string,
        side.token(cmd.worker, cmd.key, cmd.which),
        cmd.value,
        cmd.ttl,
      );
    case 'release':
      return store.release(
        KEYS[cmd.key] as string,
        side.token(cmd.worker, cmd.key, cmd.which),
        cmd.ttl,
      );
    case 'heartbeat':
      return store.heartbeat(
        KEYS[cmd.key] as string,
        side.token(cmd.worker, cmd.key, cmd.which),
        cmd.lease,
      );
    case 'saveStep':
      return store.saveStep(
        KEYS[cmd.key] as string,
        side.token(cmd.worker, cmd.key, cmd.which),
        cmd.name,
        cmd.value,
      );
    case 'advance':
      return undefined;
    case 'delete':
      inv?.completed.delete(KEYS[cmd.key] as string);
      return store.delete(KEYS[cmd.key] as string);
    case 'purge':
      return store.purgeExpired();
  }
}

async function checkAgainstModel(store: IdempotencyStore, clock: FakeClock, commands: Command[]) {
  const real = new Side(store);
  const model = new Side(new ReferenceStore(clock));
  const inv: Invariants = { lastToken: new Map(), completed: new Map() };
  for (const [step, cmd] of commands.entries()) {
    if (cmd.op === 'advance') clock.set(clock.now() + cmd.ms);
    const expected = await apply(model, cmd, clock);
    const actual = await apply(real, cmd, clock, inv);
    expect(actual, `step ${step}: ${JSON.stringify(cmd)}`).toEqual(expected);

    const now = clock.now();
    for (const k of KEYS) {
      const record = await store.get(k);
      expect(real.record(record), `record ${k} after step ${step}`).toEqual(
        model.record(await model.store.get(k)),
      );
      const frozen = inv.completed.get(k);
      if (frozen && frozen.expiresAt > now) {
        // A completed record never changes while it lives.
        expect(record, `completed ${k} changed at step ${step}`).toEqual(frozen);
      } else if (record?.status === 'completed' && record.expiresAt > now) {
        inv.completed.set(k, record);
      } else {
        inv.completed.delete(k);
      }
    }
  }
  const listed = await store.list({ limit: 10 });
  const modelListed = await model.store.list({ limit: 10 });
  expect(listed.records.map((r) => real.record(r))).toEqual(
    modelListed.records.map((r) => model.record(r)),
  );
}

const sequences = fc.array(command, { minLength: 1, maxLength: 60, size: 'max' });

describe('store model (property)', () => {
  it('the memory store behaves like the model', async () => {
    await fc.assert(
      fc.asyncProperty(sequences, async (commands) => {
        const clock = new FakeClock();
        await checkAgainstModel(createMemoryStore({ clock }), clock, commands);
      }),
      { numRuns: 200 },
    );
  });

  const dir = mkdtempSync(join(tmpdir(), 'reprocess-model-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;

  it('the SQLite store behaves like the model', async () => {
    await fc.assert(
      fc.asyncProperty(sequences, async (commands) => {
        const clock = new FakeClock();
        const store = createSqliteStore({ path: join(dir, `model-${++files}.sqlite`), clock });
        try {
          await checkAgainstModel(store, clock, commands);
        } finally {
          await store.close();
        }
      }),
      { numRuns: 100 },
    );
  });
});
