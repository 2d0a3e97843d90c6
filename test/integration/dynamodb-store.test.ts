import {
  type AttributeValue,
  DeleteItemCommand,
  DeleteTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LeaseLostError, isReprocessError } from '../../src/errors.js';
import { idempotent } from '../../src/idempotency/idempotent.js';
import type { BeginResult, IdempotencyStore } from '../../src/idempotency/store.js';
import type { Item } from '../../src/stores/dynamodb/item.js';
import {
  createDynamoDbStore,
  type DynamoDbClientLike,
  type DynamoDbStore,
  openDynamoDbStore,
  parseDynamoDbUrl,
} from '../../src/stores/dynamodb/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { type Dynalite, startDynalite } from '../helpers/dynalite.js';
import { RUN_ID } from '../helpers/services.js';
import { SteppedClock, acrossWallStep } from '../helpers/wall-step.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';

let dynalite: Dynalite;
let client: DynamoDBClient;
let n = 0;
const nextTable = () => `${RUN_ID}_t${++n}`;

beforeAll(async () => {
  dynalite = await startDynalite();
  client = dynalite.client();
});
afterAll(async () => {
  client?.destroy();
  await dynalite?.close();
});

async function dropTable(table: string): Promise<void> {
  await client.send(new DeleteTableCommand({ TableName: table }));
}

describeStoreConformance('dynamodb on dynalite (fake clock)', async () => {
  const table = nextTable();
  const clock = new FakeClock();
  const open = () => createDynamoDbStore(client, { table, clock });
  const store = open();
  await store.createTable();
  return { store, clock, restart: async () => open(), cleanup: () => dropTable(table) };
});

// Times are the client's, so one clock can drive several store objects (other clients, a
// restart) exactly; real-time behaviour across processes is in dynamodb-processes.test.ts.
describeStoreConformance('dynamodb on dynalite (openDynamoDbStore, fake clock)', async () => {
  const table = nextTable();
  const clock = new FakeClock();
  const open = () => openDynamoDbStore(dynalite.url(table), { clock });
  const store = await openDynamoDbStore(dynalite.url(table), { clock, createTable: true });
  return { store, clock, restart: open, connect: open, cleanup: () => dropTable(table) };
});

/**
 * dynalite never returns the old item on a failed condition; DynamoDB does. This client makes
 * dynalite answer like DynamoDB (it reads the item right after the failure and attaches it), so
 * the store's ALL_OLD path runs too, and it counts requests.
 */
function countingClient(options: { emulateAllOld: boolean }) {
  const counts = { requests: 0, gets: 0 };
  const wrapped: DynamoDbClientLike = {
    async send(command) {
      counts.requests++;
      if (command instanceof GetItemCommand) counts.gets++;
      try {
        return await client.send(command as never);
      } catch (error) {
        const input = command.input as { ReturnValuesOnConditionCheckFailure?: string };
        if (
          options.emulateAllOld &&
          (error as Error).name === 'ConditionalCheckFailedException' &&
          input.ReturnValuesOnConditionCheckFailure === 'ALL_OLD'
        ) {
          const { TableName, Item, Key } = command.input as {
            TableName: string;
            Item?: Record<string, AttributeValue>;
            Key?: Record<string, AttributeValue>;
          };
          const key = Key ?? { pk: Item?.pk as AttributeValue };
          const old = await client.send(
            new GetItemCommand({ TableName, Key: key, ConsistentRead: true }),
          );
          Object.assign(error as object, { Item: old.Item });
        }
        throw error;
      }
    },
  };
  return { client: wrapped, counts };
}

describeStoreConformance('dynamodb (DynamoDB-like ALL_OLD answers, fake clock)', async () => {
  const table = nextTable();
  const clock = new FakeClock();
  const store = createDynamoDbStore(countingClient({ emulateAllOld: true }).client, {
    table,
    clock,
  });
  await store.createTable();
  return { store, clock, cleanup: () => dropTable(table) };
});

describe('dynamodb store beyond the suite', () => {
  let table: string;
  let store: DynamoDbStore;
  const clock = new FakeClock();
  beforeAll(async () => {
    table = nextTable();
    store = createDynamoDbStore(client, { table, clock });
    expect(await store.createTable()).toEqual({ created: true, ttlEnabled: false });
    expect(await store.createTable()).toEqual({ created: false, ttlEnabled: false });
  });
  afterAll(() => dropTable(table));

  async function rawItem(key: string) {
    const out = await client.send(
      new GetItemCommand({ TableName: table, Key: { pk: { S: key } }, ConsistentRead: true }),
    );
    return out.Item;
  }

  /**
   * Makes `store`'s begin claim first (a store starts reading first; dynamodb-read-first.test.ts
   * covers that order): 16 new keys in a row.
   */
  async function claimingFirst(store: IdempotencyStore): Promise<void> {
    for (let i = 0; i < 16; i++) await store.begin(`claiming-first-${++n}`, 'fp', 30_000, 60_000);
  }

  it('claiming first, a fresh claim is one request; a replay and a lost race one with ALL_OLD on failure, two without', async () => {
    for (const emulateAllOld of [true, false]) {
      // Without the old item on a failed claim (dynalite), a consistent read fetches it.
      const found = emulateAllOld ? { requests: 1, gets: 0 } : { requests: 2, gets: 1 };
      const counting = countingClient({ emulateAllOld });
      const counted = createDynamoDbStore(counting.client, { table, clock });
      await claimingFirst(counted);
      counting.counts.requests = 0;
      counting.counts.gets = 0;
      const key = `replay-${emulateAllOld}`;
      const first = await counted.begin(key, 'fp', 30_000, 60_000);
      if (first.kind !== 'acquired') throw new Error('expected to acquire');
      expect(counting.counts.requests).toBe(1);
      counting.counts.requests = 0;
      expect(await counted.begin(key, 'fp', 30_000, 60_000)).toMatchObject({
        kind: 'existing',
        record: { status: 'in_progress', token: first.token },
      });
      expect(counting.counts.requests).toBe(found.requests);
      await counted.complete(key, first.token, '"r"', 60_000);
      counting.counts.requests = 0;
      counting.counts.gets = 0;
      const replay = await counted.begin(key, 'fp', 30_000, 60_000);
      expect(replay).toMatchObject({ kind: 'existing', record: { result: '"r"' } });
      expect(counting.counts).toEqual(found);
      // The record was only read: nothing in it moved.
      expect(await counted.get(key)).toEqual(replay.kind === 'existing' ? replay.record : null);
    }
  });

  it('after a delete, a claim meets the tombstone and reads it back: ALL_OLD or a consistent read', async () => {
    for (const emulateAllOld of [true, false]) {
      const counting = countingClient({ emulateAllOld });
      const counted = createDynamoDbStore(counting.client, { table, clock });
      await claimingFirst(counted);
      const key = `tombstone-${emulateAllOld}`;
      const first = await counted.begin(key, 'fp', 30_000, 60_000);
      if (first.kind !== 'acquired') throw new Error('expected to acquire');
      expect(await counted.delete(key)).toBe(true);
      counting.counts.requests = 0;
      counting.counts.gets = 0;
      const again = await counted.begin(key, 'fp', 30_000, 60_000);
      expect(again).toMatchObject({ kind: 'acquired', attempts: 1 });
      if (again.kind === 'acquired') expect(again.token).toBeGreaterThan(first.token);
      // claim (fails on the tombstone), [read], compare-and-swap put
      expect(counting.counts.gets).toBe(emulateAllOld ? 0 : 1);
      expect(counting.counts.requests).toBe(emulateAllOld ? 2 : 3);
    }
  });

  it("decides leases on the writer's wall clock: a forward step of it ends a worker's lease there too, and no step runs twice", async () => {
    const wall = new SteppedClock();
    const stepped = createDynamoDbStore(client, { table, clock: wall });
    const { outcomeOfA, sent } = await acrossWallStep(stepped, wall, () =>
      vi.waitFor(() => expect(wall.pending).toBe(1)),
    );
    expect(outcomeOfA).toBeInstanceOf(LeaseLostError);
    expect(sent).toEqual(['B']);
  });

  it('writes ttl in epoch seconds next to expiresAt in ms', async () => {
    const begun = await store.begin('ttl-attr', 'fp', 30_000, 90_500);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    let item = await rawItem('ttl-attr');
    expect(item?.expiresAt?.N).toBe(String(clock.now() + 90_500));
    expect(item?.ttl?.N).toBe(String(Math.ceil((clock.now() + 90_500) / 1000)));
    await store.complete('ttl-attr', begun.token, '"r"', 7_200_001);
    item = await rawItem('ttl-attr');
    expect(item?.ttl?.N).toBe(String(Math.ceil((clock.now() + 7_200_001) / 1000)));
  });

  it('refuses a value over 400 KB before sending it, with RESULT_TOO_LARGE', async () => {
    const counting = countingClient({ emulateAllOld: false });
    const counted = createDynamoDbStore(counting.client, { table, clock });
    const begun = await counted.begin('too-big', 'fp', 30_000, 60_000);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    const sent = counting.counts.requests;
    const big = 'é'.repeat(205_000); // 410 000 UTF-8 bytes
    await expectCode(
      counted.complete('too-big', begun.token, big, 60_000),
      'RESULT_TOO_LARGE',
      /400 KB/,
    );
    await expectCode(counted.saveStep('too-big', begun.token, 's', big), 'RESULT_TOO_LARGE');
    await expectCode(counted.fail('too-big', begun.token, big, 60_000), 'RESULT_TOO_LARGE');
    expect(counting.counts.requests).toBe(sent);
    expect((await counted.get('too-big'))?.status).toBe('in_progress');
  });

  it('maps the server refusing an item that grew past 400 KB to RESULT_TOO_LARGE, writing nothing', async () => {
    const begun = await store.begin('grown', 'fp', 30_000, 60_000);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    const half = 'x'.repeat(250 * 1024);
    expect(await store.saveStep('grown', begun.token, 'one', half)).toEqual({ kind: 'ok' });
    await expectCode(store.saveStep('grown', begun.token, 'two', half), 'RESULT_TOO_LARGE');
    await expectCode(store.complete('grown', begun.token, half, 60_000), 'RESULT_TOO_LARGE');
    const record = await store.get('grown');
    expect(Object.keys(record?.steps ?? {})).toEqual(['one']);
    expect(record?.status).toBe('in_progress');
  });

  it('through idempotent(): a result or step the item limit refuses is recorded as failed; a repeat runs nothing', async () => {
    let bodies = 0;
    let charges = 0;
    let emails = 0;
    const order = idempotent(
      async (input: { id: string; emailTooBig: boolean }, ctx) => {
        bodies++;
        await ctx.step('charge', () => {
          charges++;
          return 'c'.repeat(200 * 1024);
        });
        if (input.emailTooBig) {
          await ctx.step('email', () => {
            emails++;
            return 'e'.repeat(250 * 1024);
          });
        }
        // Under maxResultBytes (256 KiB), but the item with its step passes 400 KB.
        return 'r'.repeat(250 * 1024);
      },
      { store, key: 'id', scope: 'too-large', clock, lease: '1s', heartbeat: false },
    );
    // Releasing failures (rememberFailures: false) would let a retry run the step again: the
    // refused step still ends the operation for good.
    const releasing = idempotent(
      async (_input: { id: string }, ctx) => {
        bodies++;
        await ctx.step('charge', () => {
          charges++;
          return 'c'.repeat(200 * 1024);
        });
        await ctx.step('email', () => {
          emails++;
          return 'e'.repeat(250 * 1024);
        });
        return 'done';
      },
      { store, key: 'id', scope: 'too-large-released', clock, rememberFailures: false },
    );
    for (const [run, input] of [
      [order, { id: 'result', emailTooBig: false }],
      [order, { id: 'step', emailTooBig: true }],
      [releasing, { id: 'released' }],
    ] as const) {
      bodies = 0;
      charges = 0;
      emails = 0;
      const call = () => (run as (i: typeof input) => Promise<unknown>)(input);
      await expectCode(call(), 'RESULT_TOO_LARGE');
      await clock.advance(5_000); // past any lease: a record left in progress would be taken over
      await expectCode(call(), 'RESULT_TOO_LARGE');
      expect({ id: input.id, bodies, charges }).toEqual({ id: input.id, bodies: 1, charges: 1 });
      expect(emails).toBeLessThanOrEqual(1);
    }
  });

  /**
   * A client that lets a second writer act at one precise point of a begin: `before` the n-th
   * request the store sends, or right `after` a request fails its condition (before the store
   * reads the item back, which on dynalite is a separate request).
   */
  function meddlingClient(meddle: {
    before?: { request: number; act: () => Promise<unknown> };
    afterFailure?: () => Promise<unknown>;
  }) {
    const state = { requests: 0, acted: false };
    const meddling: DynamoDbClientLike = {
      async send(command) {
        state.requests++;
        if (meddle.before && state.requests === meddle.before.request && !state.acted) {
          state.acted = true;
          await meddle.before.act();
        }
        try {
          return await client.send(command as never);
        } catch (error) {
          if (meddle.afterFailure && !state.acted && isConditionFailed(error)) {
            state.acted = true;
            await meddle.afterFailure();
          }
          throw error;
        }
      },
    };
    return { client: meddling, state };
  }

  const isConditionFailed = (error: unknown) =>
    (error as Error).name === 'ConditionalCheckFailedException';

  it('acts on the item as it is after a failed condition: it vanished in between', async () => {
    const key = 'race-vanished';
    const first = await store.begin(key, 'fp', 30_000, 60_000);
    if (first.kind !== 'acquired') throw new Error('expected to acquire');
    await store.delete(key);
    await clock.advance(1);
    const { client: meddling, state } = meddlingClient({
      afterFailure: () =>
        client.send(new DeleteItemCommand({ TableName: table, Key: { pk: { S: key } } })),
    });
    const meddled = createDynamoDbStore(meddling, { table, clock });
    await claimingFirst(meddled);
    const result = await meddled.begin(key, 'fp', 30_000, 60_000);
    expect(state.acted).toBe(true);
    expect(result).toMatchObject({ kind: 'acquired', attempts: 1, takeover: false });
    if (result.kind === 'acquired') expect(result.token).toBeGreaterThan(first.token);
  });

  it('acts on the item as it is after a failed condition: another writer acquired it', async () => {
    const key = 'race-taken';
    const first = await store.begin(key, 'fp', 30_000, 60_000);
    if (first.kind !== 'acquired') throw new Error('expected to acquire');
    await store.delete(key);
    let other: BeginResult | undefined;
    const { client: meddling, state } = meddlingClient({
      afterFailure: async () => {
        other = await store.begin(key, 'fp', 30_000, 60_000);
      },
    });
    const meddled = createDynamoDbStore(meddling, { table, clock });
    await claimingFirst(meddled);
    const result = await meddled.begin(key, 'fp', 30_000, 60_000);
    expect(state.acted).toBe(true);
    expect(other).toMatchObject({ kind: 'acquired' });
    expect(result).toMatchObject({
      kind: 'existing',
      record: { status: 'in_progress', token: other?.kind === 'acquired' ? other.token : -1 },
    });
  });

  it('a takeover whose compare-and-swap loses to a completion returns the completed record', async () => {
    const key = 'race-completed';
    const first = await store.begin(key, 'fp', 1000, 60_000);
    if (first.kind !== 'acquired') throw new Error('expected to acquire');
    await clock.advance(2000);
    // Between the claim (which reads the ended lease) and the takeover's compare-and-swap, the
    // old holder, still holding the current token, completes.
    const { client: meddling, state } = meddlingClient({
      before: {
        request: 2,
        act: () => store.complete(key, first.token, '"late but first"', 60_000),
      },
    });
    const result = await createDynamoDbStore(meddling, { table, clock }).begin(
      key,
      'fp',
      1000,
      60_000,
    );
    expect(state.acted).toBe(true);
    expect(result).toMatchObject({
      kind: 'existing',
      record: { status: 'completed', token: first.token, result: '"late but first"' },
    });
  });

  it('reports unreadable items as RecordCorruptError', async () => {
    await client.send(
      new PutItemCommand({
        TableName: table,
        Item: { pk: { S: 'corrupt' }, status: { S: 'weird' }, token: { N: '1' } },
      }),
    );
    await expectCode(store.get('corrupt'), 'RECORD_CORRUPT', /status/);
    await expectCode(store.begin('corrupt', 'fp', 1000, 60_000), 'RECORD_CORRUPT');
    await client.send(
      new PutItemCommand({
        TableName: table,
        Item: {
          pk: { S: 'corrupt-token' },
          status: { S: 'completed' },
          fingerprint: { S: 'fp' },
          token: { S: 'seven' },
          steps: { M: {} },
        },
      }),
    );
    await expectCode(store.get('corrupt-token'), 'RECORD_CORRUPT', /token/);
    // A held record whose steps were removed by hand: saving a step says corrupt, not outage.
    const held = await store.begin('corrupt-steps', 'fp', 60_000, 60_000);
    if (held.kind !== 'acquired') throw new Error('expected to acquire');
    await client.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: 'corrupt-steps' } },
        UpdateExpression: 'REMOVE steps',
      }),
    );
    await expectCode(
      store.saveStep('corrupt-steps', held.token, 'n', '"r"'),
      'RECORD_CORRUPT',
      /steps/,
    );
  });

  it('rejects bad arguments with InvalidArgumentError naming the problem', async () => {
    await expectCode(store.begin('', 'fp', 1000, 1000), 'INVALID_ARGUMENT', /key/);
    await expectCode(store.begin('x'.repeat(2049), 'fp', 1000, 1000), 'INVALID_ARGUMENT', /key/);
    await expectCode(store.begin('k', 'fp', 1000, 0), 'INVALID_ARGUMENT', /ttlMs/);
    await expectCode(store.heartbeat('k', -3, 1000), 'INVALID_ARGUMENT', /token/);
    await expectCode(store.list({ limit: 0 }), 'INVALID_ARGUMENT', /limit/);
    await expectCode(store.list({ cursor: '!!' }), 'INVALID_ARGUMENT', /cursor/);
    expect(() => createDynamoDbStore(client, { table: 'x' })).toThrow(/table/);
    expect(() => parseDynamoDbUrl('dynamodb://tbl?endpont=x')).toThrow(/endpont/);
    expect(() => parseDynamoDbUrl('redis://tbl')).toThrow(/dynamodb:\/\//);
    // A stray % in the table: InvalidArgumentError naming it, not a URIError.
    for (const url of ['dynamodb://%E0%A4%A', 'dynamodb://%zz', 'dynamodb:///t%']) {
      expect(() => parseDynamoDbUrl(url), url).toThrow(
        expect.objectContaining({
          code: 'INVALID_ARGUMENT',
          message: expect.stringContaining('not valid percent-encoding'),
        }),
      );
    }
  });

  it('parses the URL forms', () => {
    expect(parseDynamoDbUrl('dynamodb://idempotency')).toEqual({
      table: 'idempotency',
      local: false,
      createTable: false,
    });
    expect(
      parseDynamoDbUrl('dynamodb://my.table?endpoint=http://127.0.0.1:8000&region=eu-west-1'),
    ).toEqual({
      table: 'my.table',
      endpoint: 'http://127.0.0.1:8000',
      region: 'eu-west-1',
      local: true,
      createTable: false,
    });
    expect(parseDynamoDbUrl('dynamodb://t_1?createTable=1').createTable).toBe(true);
  });
});

describe('dynamodb store when the endpoint is gone', () => {
  it('a missing table, an unreachable endpoint and a stopped server give StoreUnavailableError; a restarted server works', async () => {
    const missing = createDynamoDbStore(client, { table: `${RUN_ID}_missing` });
    await expectCode(missing.begin('k', 'fp', 1000, 60_000), 'STORE_UNAVAILABLE', /createTable/);

    const own = await startDynalite();
    const port = own.port;
    const table = nextTable();
    const store: IdempotencyStore = await openDynamoDbStore(own.url(table), {
      createTable: true,
      maxAttempts: 1,
    });
    try {
      expect((await store.begin('before', 'fp', 30_000, 60_000)).kind).toBe('acquired');
      await own.close();
      await expectCode(store.begin('during', 'fp', 30_000, 60_000), 'STORE_UNAVAILABLE');
      await expectCode(store.get('before'), 'STORE_UNAVAILABLE');

      const again = await startDynalite({ port });
      try {
        // The new server is empty: the same store object creates its table and carries on.
        await (store as DynamoDbStore).createTable();
        expect(await store.begin('after', 'fp', 30_000, 60_000)).toMatchObject({
          kind: 'acquired',
          attempts: 1,
        });
      } finally {
        await again.close();
      }
    } finally {
      await store.close?.();
    }
  });

  it('an endpoint that takes requests in and never answers fails the call at its timeout', async () => {
    // Accepts connections and reads forever: a dead load balancer, a frozen server.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const store = await openDynamoDbStore(
      `dynamodb://${nextTable()}?endpoint=http://127.0.0.1:${port}&region=us-east-1`,
      { maxAttempts: 1, requestTimeoutMs: 300 },
    );
    try {
      const started = Date.now();
      await expectCode(store.begin('stalled', 'fp', 30_000, 60_000), 'STORE_UNAVAILABLE');
      // Bounded: before the fix it was still waiting after 30 s.
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await store.close?.();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("a write the SDK sends again after its answer was lost is still this write's success", async () => {
    const table = nextTable();
    const real = createDynamoDbStore(client, { table });
    await real.createTable();
    // Sends the chosen command twice, as the SDK does when the first answer is lost after
    // the server applied it: the second one meets its own first write.
    let resend: ((name: string) => boolean) | undefined;
    const resending: DynamoDbClientLike = {
      async send(command) {
        const input = (command as { input?: { UpdateExpression?: string } }).input;
        if (resend?.(input?.UpdateExpression ?? '')) {
          await client.send(command as never).catch(() => undefined);
        }
        return client.send(command as never);
      },
    };
    const store = createDynamoDbStore(resending, { table });
    const begun = await store.begin('again', 'fp', 30_000, 60_000);
    if (begun.kind !== 'acquired') throw new Error('expected to acquire');
    resend = (update) => update.includes('#steps.');
    expect(await store.saveStep('again', begun.token, 'charge', '"ch_1"')).toEqual({ kind: 'ok' });
    resend = (update) => update.startsWith('SET #leaseUntil = :leaseUntil, #updatedAt');
    expect(await store.heartbeat('again', begun.token, 30_000)).toMatchObject({ kind: 'ok' });
    resend = (update) => update.includes('#status = :final');
    expect(await store.complete('again', begun.token, '"done"', 60_000)).toEqual({ kind: 'ok' });
    expect((await real.get('again'))?.status).toBe('completed');
    // A second call with the same arguments is not a resend: the record is finished, and it
    // is lease_lost as in every store.
    expect(await real.complete('again', begun.token, '"done"', 60_000)).toEqual({
      kind: 'lease_lost',
    });
    // A stale token is still refused, resend or not.
    expect(await store.complete('again', begun.token - 1, '"other"', 60_000)).toEqual({
      kind: 'lease_lost',
    });
  });

  it('a begin the SDK sends again after its answer was lost acquires: new, expired and taken-over records', async () => {
    const table = nextTable();
    const clock = new FakeClock();
    const real = createDynamoDbStore(client, { table, clock });
    await real.createTable();
    // Sends every claim twice (a PutItem of a new in-progress item, or the takeover's UpdateItem), as
    // the SDK does when the first answer is lost after the server applied it.
    const resending: DynamoDbClientLike = {
      async send(command) {
        const input = (command as { input?: { Item?: Item; UpdateExpression?: string } }).input;
        const claim = input?.Item?.status?.S === 'in_progress';
        if (claim || input?.UpdateExpression?.startsWith('SET #token = :token, #attempts')) {
          await client.send(command as never);
        }
        return client.send(command as never);
      },
    };
    const store = createDynamoDbStore(resending, { table, clock });

    // A new key.
    const fresh = await store.begin('resent', 'fp', 1000, 5000);
    expect(fresh).toMatchObject({ kind: 'acquired', attempts: 1, takeover: false });
    if (fresh.kind !== 'acquired') throw new Error('expected to acquire');
    expect((await real.get('resent'))?.token).toBe(fresh.token);
    // Another call's claim is still in progress to everybody else.
    expect(await real.begin('resent', 'fp', 1000, 5000)).toMatchObject({ kind: 'existing' });

    // The lease ended: the takeover, resent, keeps the steps.
    expect(await real.saveStep('resent', fresh.token, 'charge', '"ch_1"')).toEqual({ kind: 'ok' });
    await clock.advance(1001);
    const taken = await store.begin('resent', 'fp', 1000, 5000);
    expect(taken).toMatchObject({ kind: 'acquired', attempts: 2, takeover: true });
    if (taken.kind !== 'acquired') throw new Error('expected to acquire');
    expect(taken.token).toBeGreaterThan(fresh.token);
    expect(taken.steps).toEqual({ charge: '"ch_1"' });
    expect(await real.complete('resent', taken.token, '"done"', 5000)).toEqual({ kind: 'ok' });

    // Expired: a new operation on the same key.
    await clock.advance(5001);
    const again = await store.begin('resent', 'fp2', 1000, 5000);
    expect(again).toMatchObject({ kind: 'acquired', attempts: 1, takeover: false, steps: {} });
    if (again.kind !== 'acquired') throw new Error('expected to acquire');
    expect(again.token).toBeGreaterThan(taken.token);
    expect(await real.complete('resent', again.token, '"new"', 5000)).toEqual({ kind: 'ok' });
    expect((await real.get('resent'))?.result).toBe('"new"');
  });

  it('a connection cut while a request is in flight gives StoreUnavailableError; the next call works', async () => {
    const table = nextTable();
    await createDynamoDbStore(client, { table }).createTable();
    // A relay between the store and dynalite that, when told, takes a request in and drops the
    // connection without an answer, as a dying load balancer or a server crash would.
    let cut = false;
    const target = new URL(dynalite.endpoint);
    const sockets = new Set<Socket>();
    const relay = createServer((socket) => {
      sockets.add(socket);
      const upstream = connect({ host: target.hostname, port: Number(target.port) });
      socket.on('data', (chunk) => {
        if (cut) {
          socket.destroy();
          upstream.destroy();
        } else upstream.write(chunk);
      });
      upstream.on('data', (chunk) => socket.write(chunk));
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const { port } = relay.address() as AddressInfo;
    const store = await openDynamoDbStore(
      `dynamodb://${table}?endpoint=http://127.0.0.1:${port}&region=us-east-1`,
      { maxAttempts: 1 },
    );
    try {
      expect((await store.begin('cut-before', 'fp', 30_000, 60_000)).kind).toBe('acquired');
      cut = true;
      await expectCode(store.begin('cut-during', 'fp', 30_000, 60_000), 'STORE_UNAVAILABLE');
      await expectCode(store.complete('cut-before', 1, '"r"', 60_000), 'STORE_UNAVAILABLE');
      cut = false;
      // Nothing of the cut calls reached the table; the same store carries on.
      expect(await store.get('cut-during')).toBeUndefined();
      expect(await store.begin('cut-during', 'fp', 30_000, 60_000)).toMatchObject({
        kind: 'acquired',
        attempts: 1,
      });
    } finally {
      await store.close?.();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    }
  });
});

async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isReprocessError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  if (message) expect((error as Error).message).toMatch(message);
}
