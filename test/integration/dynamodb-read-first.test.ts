import {
  type AttributeValue,
  DeleteTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type PutItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import type { BeginResult } from '../../src/idempotency/store.js';
import {
  createDynamoDbStore,
  type DynamoDbClientLike,
  type DynamoDbStore,
} from '../../src/stores/dynamodb/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { type Dynalite, startDynalite } from '../helpers/dynalite.js';
import { RUN_ID } from '../helpers/services.js';

// begin reads first while most recent keys had a record and claims first while most were new
// (src/stores/begin-order.ts). These tests count what reaches dynalite and check that both
// orders give the same result and leave the same item.

let dynalite: Dynalite;
let client: DynamoDBClient;
const table = `${RUN_ID}_read_first`;
const clock = new FakeClock();
/** Sets up records; its own order does not matter. */
let setup: DynamoDbStore;

beforeAll(async () => {
  dynalite = await startDynalite();
  client = dynalite.client();
  setup = createDynamoDbStore(client, { table, clock });
  await setup.createTable();
});
afterAll(async () => {
  await client?.send(new DeleteTableCommand({ TableName: table }));
  client?.destroy();
  await dynalite?.close();
});

/**
 * A store on a pass-through client that logs the name of every command it sends to the real
 * dynalite client (nothing is answered by the test). `before` runs once, just before the n-th
 * command after it is set.
 */
function countedStore() {
  const sent: string[] = [];
  let before: { request: number; act: () => Promise<unknown> } | undefined;
  const counting: DynamoDbClientLike = {
    async send(command) {
      sent.push(command.constructor.name.replace(/Command$/, ''));
      if (before !== undefined && --before.request === 0) {
        const { act } = before;
        before = undefined;
        await act();
      }
      return client.send(command as never);
    },
  };
  return {
    store: createDynamoDbStore(counting, { table, clock }),
    sent,
    /** The commands sent since the last call, then forgets them. */
    take(): string[] {
      return sent.splice(0);
    },
    beforeRequest(request: number, act: () => Promise<unknown>) {
      before = { request, act };
    },
  };
}

let keys = 0;
const newKey = (prefix: string) => `${prefix}-${++keys}`;

/** Leaves `store` reading first: begins of a completed key (each finds a record). */
async function driveReadFirst(store: DynamoDbStore): Promise<void> {
  const key = newKey('replayed');
  const begun = await setup.begin(key, 'fp', 30_000, 600_000);
  if (begun.kind !== 'acquired') throw new Error('expected to acquire');
  await setup.complete(key, begun.token, '"r"', 600_000);
  for (let i = 0; i < 16; i++) await store.begin(key, 'fp', 30_000, 600_000);
}

/** Leaves `store` claiming first: begins of new keys. */
async function driveInsertFirst(store: DynamoDbStore): Promise<void> {
  for (let i = 0; i < 16; i++) await store.begin(newKey('new'), 'fp', 30_000, 600_000);
}

describe('dynamodb begin: the order follows what recent keys found', () => {
  it('a new store reads first: a new key is a GetItem, then the claim', async () => {
    const counted = countedStore();
    const begun = await counted.store.begin(newKey('first'), 'fp', 30_000, 60_000);
    expect(begun).toMatchObject({ kind: 'acquired', attempts: 1, takeover: false });
    expect(counted.take()).toEqual(['GetItem', 'PutItem']);
  });

  it('after a run of replays, each replay is one GetItem and no write', async () => {
    const counted = countedStore();
    const replayed: string[] = [];
    for (let i = 0; i < 20; i++) {
      const key = newKey('done');
      const begun = await setup.begin(key, 'fp', 30_000, 600_000);
      if (begun.kind !== 'acquired') throw new Error('expected to acquire');
      await setup.complete(key, begun.token, `"r${i}"`, 600_000);
      replayed.push(key);
    }
    await driveReadFirst(counted.store);
    counted.take();
    for (const [i, key] of replayed.entries()) {
      expect(await counted.store.begin(key, 'fp', 30_000, 600_000)).toMatchObject({
        kind: 'existing',
        record: { key, status: 'completed', result: `"r${i}"` },
      });
    }
    expect(counted.take()).toEqual(Array(20).fill('GetItem'));
  });

  it('after a run of new keys, each begin is one PutItem and no GetItem', async () => {
    const counted = countedStore();
    await driveInsertFirst(counted.store);
    counted.take();
    for (let i = 0; i < 20; i++) {
      expect(await counted.store.begin(newKey('fresh'), 'fp', 30_000, 600_000)).toMatchObject({
        kind: 'acquired',
        attempts: 1,
      });
    }
    expect(counted.take()).toEqual(Array(20).fill('PutItem'));
  });

  it('from read-first, the 12th new key in a row is the first one claimed first', async () => {
    const counted = countedStore();
    await driveReadFirst(counted.store);
    const first = (sent: string[]) => sent[0];
    const firsts: (string | undefined)[] = [];
    for (let i = 0; i < 12; i++) {
      counted.take();
      await counted.store.begin(newKey('turn'), 'fp', 30_000, 600_000);
      firsts.push(first(counted.take()));
    }
    // From a settled read-first, the 12th new key is the first claimed first.
    expect(firsts).toEqual([...Array(11).fill('GetItem'), 'PutItem']);
  });

  it('read-first, a creator that races in between the read and the claim wins; its record comes back', async () => {
    const counted = countedStore();
    await driveReadFirst(counted.store);
    counted.take();
    const key = newKey('race');
    let other: BeginResult | undefined;
    counted.beforeRequest(2, async () => {
      other = await setup.begin(key, 'fp', 30_000, 60_000);
    });
    const result = await counted.store.begin(key, 'fp', 30_000, 60_000);
    expect(other).toMatchObject({ kind: 'acquired' });
    expect(result).toMatchObject({
      kind: 'existing',
      record: { status: 'in_progress', token: other?.kind === 'acquired' ? other.token : -1 },
    });
    // The claim failed on the creator's item, which dynalite does not return with the failure:
    // a consistent read fetched it.
    expect(counted.take()).toEqual(['GetItem', 'PutItem', 'GetItem']);
  });
});

/** A record's state, made the same way on any key. */
type Scenario = {
  name: string;
  /** Puts the key in the state, at the clock's time. */
  make: (key: string) => Promise<void>;
  /** How far the clock moves after making the state, before begin (default 0). */
  thenMs?: number;
  fingerprint?: string;
  /** What the read-first begin sends. */
  readFirstSends: string[];
  /** What both begins give (checked beyond their being equal). */
  expected: Record<string, unknown> | { code: string };
};

async function acquired(key: string, leaseMs: number, ttlMs: number) {
  const begun = await setup.begin(key, 'fp', leaseMs, ttlMs);
  if (begun.kind !== 'acquired') throw new Error(`expected to acquire ${key}`);
  return begun;
}

async function putRaw(key: string, item: PutItemCommandInput['Item']) {
  await client.send(new PutItemCommand({ TableName: table, Item: { ...item, pk: { S: key } } }));
}

const scenarios: Scenario[] = [
  {
    name: 'a completed record',
    make: async (key) => {
      const begun = await acquired(key, 30_000, 60_000);
      await setup.saveStep(key, begun.token, 'charge', '"ch_1"');
      await setup.complete(key, begun.token, '"done"', 60_000);
    },
    readFirstSends: ['GetItem'],
    expected: {
      kind: 'existing',
      record: { status: 'completed', result: '"done"', steps: { charge: '"ch_1"' } },
    },
  },
  {
    name: 'a failed record',
    make: async (key) => {
      const begun = await acquired(key, 30_000, 60_000);
      await setup.fail(key, begun.token, '"boom"', 60_000);
    },
    readFirstSends: ['GetItem'],
    expected: { kind: 'existing', record: { status: 'failed', error: '"boom"' } },
  },
  {
    name: 'a live in-progress record',
    make: async (key) => {
      const begun = await acquired(key, 30_000, 60_000);
      await setup.saveStep(key, begun.token, 'charge', '"ch_1"');
    },
    readFirstSends: ['GetItem'],
    expected: {
      kind: 'existing',
      record: { status: 'in_progress', attempts: 1, steps: { charge: '"ch_1"' } },
    },
  },
  {
    name: 'a completed record under another fingerprint',
    make: async (key) => {
      const begun = await acquired(key, 30_000, 60_000);
      await setup.complete(key, begun.token, '"done"', 60_000);
    },
    fingerprint: 'other',
    readFirstSends: ['GetItem'],
    expected: { kind: 'existing', record: { status: 'completed', fingerprint: 'fp' } },
  },
  {
    name: 'an ended lease under another fingerprint (never taken over)',
    make: async (key) => {
      await acquired(key, 1000, 60_000);
    },
    thenMs: 2000,
    fingerprint: 'other',
    readFirstSends: ['GetItem'],
    expected: { kind: 'existing', record: { status: 'in_progress', fingerprint: 'fp' } },
  },
  {
    name: 'an ended lease (takeover: attempts + 1, steps kept)',
    make: async (key) => {
      const begun = await acquired(key, 1000, 60_000);
      await setup.saveStep(key, begun.token, 'charge', '"ch_1"');
    },
    thenMs: 2000,
    readFirstSends: ['GetItem', 'UpdateItem'],
    expected: {
      kind: 'acquired',
      attempts: 2,
      takeover: true,
      steps: { charge: '"ch_1"' },
    },
  },
  {
    name: 'an expired record (a new operation: steps start afresh)',
    make: async (key) => {
      const begun = await acquired(key, 1000, 5000);
      await setup.saveStep(key, begun.token, 'charge', '"ch_1"');
      await setup.complete(key, begun.token, '"done"', 5000);
    },
    thenMs: 6000,
    readFirstSends: ['GetItem', 'PutItem'],
    expected: { kind: 'acquired', attempts: 1, takeover: false, steps: {} },
  },
  {
    name: 'a tombstone (a deleted record)',
    make: async (key) => {
      await acquired(key, 30_000, 60_000);
      await setup.delete(key);
    },
    readFirstSends: ['GetItem', 'PutItem'],
    expected: { kind: 'acquired', attempts: 1, takeover: false, steps: {} },
  },
  {
    name: 'a malformed item (an unknown status)',
    make: (key) => putRaw(key, { status: { S: 'weird' }, token: { N: '1' } }),
    // the read finds it unreadable (insert-first: the claim fails on it, then its read)
    readFirstSends: ['GetItem'],
    expected: { code: 'RECORD_CORRUPT' },
  },
  {
    name: 'a malformed item (a completed record without steps and attempts)',
    make: (key) =>
      putRaw(key, {
        status: { S: 'completed' },
        fingerprint: { S: 'fp' },
        token: { N: '5' },
        leaseUntil: { N: '0' },
        expiresAt: { N: String(clock.now() + 60_000) },
        createdAt: { N: '1' },
        updatedAt: { N: '1' },
        result: { S: '"r"' },
      }),
    // likewise; nothing is written in either order
    readFirstSends: ['GetItem'],
    expected: { code: 'RECORD_CORRUPT' },
  },
];

/** A begin's result, or the code it threw, with the key taken out so two keys compare. */
async function outcome(
  store: DynamoDbStore,
  key: string,
  fingerprint: string,
): Promise<Record<string, unknown>> {
  try {
    const result = await store.begin(key, fingerprint, 1000, 60_000);
    if (result.kind === 'existing') {
      expect(result.record.key).toBe(key);
      return { ...result, record: { ...result.record, key: '<key>' } };
    }
    return { ...result };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string' || !isReprocessError(error, code)) throw error;
    return { code };
  }
}

async function storedItem(key: string) {
  const out = await client.send(
    new GetItemCommand({ TableName: table, Key: { pk: { S: key } }, ConsistentRead: true }),
  );
  if (out.Item === undefined) return undefined;
  const item: Record<string, AttributeValue> = { ...out.Item, pk: { S: '<key>' } };
  // Each begin call's own random id: only whether there is one can be the same.
  if (item.claim !== undefined) item.claim = { S: '<claim>' };
  if (item.write !== undefined) item.write = { S: '<write>' };
  return item;
}

describe('dynamodb begin: read-first gives what insert-first gives', () => {
  const readFirst = countedStore();
  const insertFirst = countedStore();

  for (const scenario of scenarios) {
    it(`on ${scenario.name}`, async () => {
      await driveReadFirst(readFirst.store);
      await driveInsertFirst(insertFirst.store);
      // Both keys get the same history at the same (fake) times, so tokens and times match.
      const a = newKey('read-first');
      const b = newKey('insert-first');
      await scenario.make(a);
      await scenario.make(b);
      await clock.advance(scenario.thenMs ?? 0);
      const fingerprint = scenario.fingerprint ?? 'fp';
      readFirst.take();
      insertFirst.take();

      const byReading = await outcome(readFirst.store, a, fingerprint);
      const readSent = readFirst.take();
      const byClaiming = await outcome(insertFirst.store, b, fingerprint);
      const claimSent = insertFirst.take();

      expect(readSent).toEqual(scenario.readFirstSends);
      expect(claimSent[0]).toBe('PutItem');
      expect(byReading).toEqual(byClaiming);
      expect(byReading).toMatchObject(scenario.expected);
      expect(await storedItem(a)).toEqual(await storedItem(b));
    });
  }
});
