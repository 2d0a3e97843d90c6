import { readFileSync } from 'node:fs';
import { ChangeMessageVisibilityCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import type { ConsumerEvent } from '../../src/consumer/events.js';
import type { ConsumerMessage } from '../../src/consumer/message-processor.js';
import type { QuarantineHistory } from '../../src/consumer/types.js';
import { NonRetryableError, isReprocessError } from '../../src/errors.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import {
  type SqsEventLike,
  type SqsHandlerOptions,
  type SqsRecordLike,
  sqsHandler,
  visibilitySeconds,
} from '../../src/lambda/sqs/index.js';
import { seededRandom } from '../../src/random.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

const fixture = (name: string): SqsEventLike =>
  JSON.parse(readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8')) as SqsEventLike;

const DLQ = 'https://sqs.us-east-2.amazonaws.com/123456789012/payments-dlq';
const PAYMENTS = 'https://sqs.us-east-2.amazonaws.com/123456789012/payments';

interface Call {
  name: string;
  input: Record<string, unknown>;
}

/**
 * A structural stand-in for SQSClient that records the commands it is sent. Not a broker:
 * it keeps no queue; the tests check what the handler asked SQS to do.
 */
function recordingSqs(fail?: (call: Call) => boolean) {
  const calls: Call[] = [];
  const client = {
    async send(command: ChangeMessageVisibilityCommand | SendMessageCommand) {
      expect(
        command instanceof ChangeMessageVisibilityCommand || command instanceof SendMessageCommand,
      ).toBe(true);
      const call = {
        name: command.constructor.name,
        input: command.input as unknown as Record<string, unknown>,
      };
      calls.push(call);
      if (fail?.(call))
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      return {};
    },
  };
  return { client, calls };
}

function setup(overrides: Partial<SqsHandlerOptions> = {}, store?: IdempotencyStore) {
  const clock = new FakeClock();
  const events: ConsumerEvent[] = [];
  const seen: ConsumerMessage[] = [];
  const sqs = recordingSqs();
  const handler = sqsHandler({
    async handler(message) {
      seen.push(message);
      const body = message.body as { amount?: number; step?: number };
      if (body.amount === 300)
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      return { ok: true };
    },
    idempotency: { store: store ?? createMemoryStore({ clock }) },
    retry: { jitter: 'none', base: '10s' },
    sqs: sqs.client,
    deadLetterQueueUrl: DLQ,
    clock,
    random: seededRandom(3),
    onEvent: (e) => events.push(e),
    ...overrides,
  });
  return { clock, events, seen, sqs, handler };
}

const callOf = (calls: Call[], name: string) => calls.find((c) => c.name === name);

function history(call: Call | undefined): QuarantineHistory {
  const attributes = call?.input.MessageAttributes as Record<string, { StringValue: string }>;
  return JSON.parse(attributes['reprocess-history']?.StringValue ?? 'null') as QuarantineHistory;
}

describe('sqsHandler on a standard queue', () => {
  it('returns the failures, backs off their visibility and quarantines poison to the DLQ', async () => {
    const t = setup();
    const result = await t.handler(fixture('sqs-standard.json'));
    expect(result).toEqual({
      batchItemFailures: [{ itemIdentifier: '2e1424d4-f796-459a-8184-9c92662be6da' }],
    });
    expect(t.sqs.calls.map((c) => c.name).sort()).toEqual([
      'ChangeMessageVisibilityCommand',
      'SendMessageCommand',
    ]);
    // Receive count 2: the second delay of exponential 10s, 20s...
    expect(callOf(t.sqs.calls, 'ChangeMessageVisibilityCommand')?.input).toEqual({
      QueueUrl: PAYMENTS,
      ReceiptHandle: 'AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq2e1424d4f796459a81849c92662be6da',
      VisibilityTimeout: 20,
    });
    const sent = callOf(t.sqs.calls, 'SendMessageCommand')?.input;
    expect(sent).toMatchObject({ QueueUrl: DLQ, MessageBody: '{"invoiceId": ' });
    expect(sent?.MessageGroupId).toBeUndefined();
    const attributes = sent?.MessageAttributes as Record<string, unknown>;
    expect(attributes['idempotency-key']).toEqual({
      DataType: 'String',
      StringValue: 'pay-inv-1003',
    });
    expect(history(callOf(t.sqs.calls, 'SendMessageCommand'))).toMatchObject({
      reason: 'poison',
      attempts: 1,
      source: 'payments',
      idempotencyKey: 'pay-inv-1003',
      lastError: { code: 'POISON_MESSAGE' },
    });
  });

  it('gives the handler the body, attributes as headers, receive count and sent time', async () => {
    const t = setup();
    await t.handler(fixture('sqs-standard.json'));
    const [first, second] = t.seen;
    expect(first).toMatchObject({
      id: '059f36b4-87a3-44ab-83d2-661975830a7d',
      body: { invoiceId: 'inv-1001', amount: 1250 },
      headers: { 'idempotency-key': 'pay-inv-1001', tenant: 'acme' },
      source: 'payments',
      deliveryCount: 1,
      attempt: 1,
      publishedAt: 1700000000000,
    });
    expect(second?.headers).toEqual({
      'idempotency-key': 'pay-inv-1002',
      priority: '3',
      trace: 'AQID',
    });
    expect(second?.attempt).toBe(2);
  });

  it('keeps binary and number attributes untouched on the dead-letter message', async () => {
    const t = setup({
      async handler() {
        throw new NonRetryableError('declined', { code: 'DECLINED' });
      },
    });
    const event = fixture('sqs-standard.json');
    event.Records = [event.Records[1] as SqsRecordLike];
    expect(await t.handler(event)).toEqual({ batchItemFailures: [] });
    const attributes = t.sqs.calls[0]?.input.MessageAttributes as Record<string, unknown>;
    expect(attributes.priority).toEqual({ DataType: 'Number', StringValue: '3' });
    expect(attributes.trace).toEqual({ DataType: 'Binary', BinaryValue: Buffer.from([1, 2, 3]) });
    expect(history(t.sqs.calls[0])).toMatchObject({
      reason: 'non_retryable',
      attempts: 2,
      lastError: { name: 'NonRetryableError', code: 'DECLINED', message: 'declined' },
    });
  });

  it('quarantines when the receive count reaches maxAttempts, with the first failure kept', async () => {
    const clock = new FakeClock();
    const store = createMemoryStore({ clock });
    const t = setup({ retry: { maxAttempts: 3, jitter: 'none', base: '10s' }, clock }, store);
    const event = fixture('sqs-standard.json');
    const record = event.Records[1] as SqsRecordLike;
    event.Records = [record];
    const firstFailure = clock.now();
    await t.handler(event);
    await clock.advance(20_000);
    record.attributes.ApproximateReceiveCount = '3';
    const result = await t.handler(event);
    expect(result.batchItemFailures).toEqual([]);
    expect(t.sqs.calls.map((c) => c.name)).toEqual([
      'ChangeMessageVisibilityCommand',
      'SendMessageCommand',
    ]);
    expect(history(t.sqs.calls[1])).toMatchObject({
      reason: 'attempts_exhausted',
      attempts: 3,
      firstFailureAt: firstFailure,
      lastFailureAt: firstFailure + 20_000,
      lastError: { name: 'Error', code: 'ECONNRESET', message: 'socket hang up' },
    });
  });

  it('a classify that throws fails its own record only, never the whole batch', async () => {
    const t = setup({
      retry: {
        jitter: 'none',
        base: '10s',
        // A user's classifier that meets an error without the shape it expects.
        classify: (error) => (error as { response: { status: number } }).response.status >= 500,
      },
    });
    const result = await t.handler(fixture('sqs-standard.json'));
    // The failed one alone (its classify threw); the success is not reported, so Lambda does
    // not run it again.
    expect(result).toEqual({
      batchItemFailures: [{ itemIdentifier: '2e1424d4-f796-459a-8184-9c92662be6da' }],
    });
    expect(t.seen.map((m) => (m.body as { invoiceId: string }).invoiceId).sort()).toEqual([
      'inv-1001',
      'inv-1002',
    ]);
  });

  it('never sets a visibility past 12 hours', async () => {
    const t = setup({ retry: { jitter: 'none', base: '24h', cap: '24h' } });
    await t.handler(fixture('sqs-standard.json'));
    expect(callOf(t.sqs.calls, 'ChangeMessageVisibilityCommand')?.input.VisibilityTimeout).toBe(
      43_200,
    );
    expect([0, 1, 999, 1000, 1001, 90_000_000].map(visibilitySeconds)).toEqual([
      0, 1, 1, 1, 2, 43_200,
    ]);
  });

  it('without a client: failures reported, quarantine left to the redrive policy', async () => {
    const t = setup({ sqs: undefined as never, deadLetterQueueUrl: undefined as never });
    const result = await t.handler(fixture('sqs-standard.json'));
    expect(result.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([
      '2e1424d4-f796-459a-8184-9c92662be6da',
      'c80e8021-a70a-42c7-a470-796e1186f753',
    ]);
    expect(t.sqs.calls).toEqual([]);
  });

  it('reports a dead-letter send that fails as a failure, with its backoff', async () => {
    const t = setup();
    const failing = recordingSqs((c) => c.name === 'SendMessageCommand');
    const handler = sqsHandler({
      handler: async () => undefined,
      idempotency: { store: createMemoryStore({ clock: t.clock }) },
      retry: { jitter: 'none', base: '5s' },
      sqs: failing.client,
      deadLetterQueueUrl: DLQ,
      clock: t.clock,
      onEvent: (e) => t.events.push(e),
    });
    const result = await handler(fixture('sqs-standard.json'));
    expect(result.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([
      'c80e8021-a70a-42c7-a470-796e1186f753',
    ]);
    expect(failing.calls.map((c) => [c.name, c.input.VisibilityTimeout])).toEqual([
      ['SendMessageCommand', undefined],
      ['ChangeMessageVisibilityCommand', 5],
    ]);
    expect(t.events.filter((e) => e.type === 'settle_failed')).toMatchObject([
      { action: 'quarantine' },
    ]);
  });

  it('refuses to drop the history when a message already has 10 attributes', async () => {
    const t = setup({
      async handler() {
        throw new NonRetryableError('no');
      },
    });
    const event = fixture('sqs-standard.json');
    const record = event.Records[0] as SqsRecordLike;
    record.messageAttributes = Object.fromEntries(
      Array.from({ length: 10 }, (_, i) => [`a${i}`, { dataType: 'String', stringValue: `${i}` }]),
    );
    record.messageAttributes['idempotency-key'] = { dataType: 'String', stringValue: 'k' };
    event.Records = [record];
    const result = await t.handler(event);
    expect(result.batchItemFailures).toHaveLength(1);
    const failed = t.events.find((e) => e.type === 'settle_failed');
    expect(failed?.type === 'settle_failed' && String(failed.error)).toMatch(
      /already has 10 message attributes/,
    );
  });

  it('runs one effect for a duplicate in the same batch', async () => {
    let effects = 0;
    const t = setup({
      async handler() {
        effects += 1;
      },
      concurrency: 1,
    });
    const event = fixture('sqs-standard.json');
    const original = event.Records[0] as SqsRecordLike;
    const copy = { ...original, messageId: 'dup-of-059f36b4', receiptHandle: 'AQEBdup' };
    event.Records = [original, copy];
    expect(await t.handler(event)).toEqual({ batchItemFailures: [] });
    expect(effects).toBe(1);
    expect(
      t.events.filter((e) => e.type === 'acked').map((e) => e.type === 'acked' && e.replayed),
    ).toEqual([false, true]);
  });

  it('scopes keys by the whole queue ARN: a queue of the same name in another account or region is another source', async () => {
    const ran: string[] = [];
    const t = setup({
      async handler(message) {
        ran.push(message.id);
      },
      concurrency: 1,
    });
    const event = fixture('sqs-standard.json');
    const original = event.Records[0] as SqsRecordLike;
    // The same key and body from "payments" of two other accounts, and of another region.
    const from = (id: string, arn: string): SqsRecordLike => ({
      ...original,
      messageId: id,
      receiptHandle: `AQEB${id}`,
      eventSourceARN: arn,
    });
    event.Records = [
      original,
      from('other-account', 'arn:aws:sqs:us-east-2:210987654321:payments'),
      from('other-region', 'arn:aws:sqs:eu-west-1:123456789012:payments'),
      from('same-queue', original.eventSourceARN),
    ];
    expect(await t.handler(event)).toEqual({ batchItemFailures: [] });
    // Each queue ran its own message; only the copy from the first queue replayed.
    expect(ran).toEqual([original.messageId, 'other-account', 'other-region']);
    expect(
      t.events.filter((e) => e.type === 'acked').map((e) => e.type === 'acked' && e.replayed),
    ).toEqual([false, false, false, true]);
  });

  it('with an operation of its own, every queue shares that one scope', async () => {
    const ran: string[] = [];
    const t = setup({
      async handler(message) {
        ran.push(message.id);
      },
      idempotency: { store: createMemoryStore(), operation: 'charge' },
      concurrency: 1,
    });
    const event = fixture('sqs-standard.json');
    const original = event.Records[0] as SqsRecordLike;
    event.Records = [
      original,
      {
        ...original,
        messageId: 'other',
        eventSourceARN: 'arn:aws:sqs:us-east-2:210987654321:payments',
      },
    ];
    expect(await t.handler(event)).toEqual({ batchItemFailures: [] });
    expect(ran).toEqual([original.messageId]);
  });

  it('sends a concurrent duplicate back after the lease hint instead of running it', async () => {
    let effects = 0;
    let release: () => void = () => undefined;
    const t = setup({
      async handler() {
        effects += 1;
        await new Promise<void>((resolve) => (release = resolve));
      },
      concurrency: 2,
      idempotency: { store: createMemoryStore(), lease: '30s' },
    });
    const event = fixture('sqs-standard.json');
    const original = event.Records[0] as SqsRecordLike;
    event.Records = [original, { ...original, messageId: 'dup', receiptHandle: 'AQEBdup' }];
    const running = t.handler(event);
    await new Promise((resolve) => setImmediate(resolve));
    release();
    const result = await running;
    expect(effects).toBe(1);
    expect(result.batchItemFailures).toEqual([{ itemIdentifier: 'dup' }]);
    expect(t.sqs.calls[0]?.input).toMatchObject({
      ReceiptHandle: 'AQEBdup',
      VisibilityTimeout: 30,
    });
  });

  it('runs two copies of one message in one batch one after the other: the second replays', async () => {
    let effects = 0;
    const t = setup({
      async handler() {
        effects += 1;
        await new Promise((resolve) => setImmediate(resolve));
      },
      idempotency: { store: createMemoryStore(), lease: '30s' },
    });
    const event = fixture('sqs-standard.json');
    const original = event.Records[0] as SqsRecordLike;
    // Standard SQS may deliver one message twice in a batch: same id, other receipt handles.
    event.Records = [original, { ...original, receiptHandle: 'AQEBsecond-receipt' }];
    expect(await t.handler(event)).toEqual({ batchItemFailures: [] });
    expect(effects).toBe(1);
    expect(t.sqs.calls).toEqual([]);
  });

  it('lists a failed message once, however many copies of it the batch held, and runs it once', async () => {
    const t = setup();
    const event = fixture('sqs-standard.json');
    const failing = event.Records.find(
      (r) => (JSON.parse(r.body) as { amount?: number }).amount === 300,
    ) as SqsRecordLike;
    event.Records = [failing, { ...failing, receiptHandle: 'AQEBsecond-receipt' }];
    expect(await t.handler(event)).toEqual({
      batchItemFailures: [{ itemIdentifier: failing.messageId }],
    });
    expect(t.seen).toHaveLength(1);
  });

  it('does not run a handler while the store is down, and backs the message off', async () => {
    let runs = 0;
    const store = createMemoryStore();
    const broken = new Proxy(store, {
      get(target, property) {
        const value = Reflect.get(target, property);
        return typeof value === 'function'
          ? () => Promise.reject(new Error('connect ETIMEDOUT'))
          : value;
      },
    });
    const t = setup(
      {
        async handler() {
          runs += 1;
        },
      },
      broken,
    );
    const result = await t.handler(fixture('sqs-standard.json'));
    expect(runs).toBe(0);
    expect(result.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([
      '059f36b4-87a3-44ab-83d2-661975830a7d',
      '2e1424d4-f796-459a-8184-9c92662be6da',
    ]);
    const retries = t.events.filter((e) => e.type === 'retry_scheduled');
    expect(
      retries.every((e) => e.type === 'retry_scheduled' && e.reason === 'store_unavailable'),
    ).toBe(true);
    // The poison one never needed the store.
    expect(t.sqs.calls.map((c) => c.name).sort()).toEqual([
      'ChangeMessageVisibilityCommand',
      'ChangeMessageVisibilityCommand',
      'SendMessageCommand',
    ]);
  });

  it('quarantines a message past maxMessageAgeMs by its SentTimestamp', async () => {
    const t = setup({ maxMessageAgeMs: 5_000 });
    await t.clock.advance(6_000);
    const event = fixture('sqs-standard.json');
    event.Records = [event.Records[0] as SqsRecordLike];
    expect(await t.handler(event)).toEqual({ batchItemFailures: [] });
    expect(t.seen).toEqual([]);
    expect(history(t.sqs.calls[0])).toMatchObject({ reason: 'max_age' });
  });

  it('uses a given queue URL', async () => {
    const t = setup({ queueUrl: (q) => `http://127.0.0.1:9324/queue/${q.name}` });
    await t.handler(fixture('sqs-standard.json'));
    expect(callOf(t.sqs.calls, 'ChangeMessageVisibilityCommand')?.input.QueueUrl).toBe(
      'http://127.0.0.1:9324/queue/payments',
    );
  });
});

describe('sqsHandler on a FIFO queue', () => {
  it('stops a message group at its first failure; other groups go on', async () => {
    const ran: string[] = [];
    const t = setup({
      async handler(message) {
        ran.push(message.headers['idempotency-key'] as string);
        if (message.headers['idempotency-key'] === 'A-1')
          throw Object.assign(new Error('busy'), { status: 503 });
      },
      deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq.fifo',
    });
    const result = await t.handler(fixture('sqs-fifo.json'));
    expect(ran).toEqual(['A-1', 'B-1', 'B-2']);
    expect(result.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([
      '11d6ee51-4cc7-4302-9e22-7cd8afdaadf5',
      '8a2f6b1e-5c3d-4e7f-a9b0-c1d2e3f4a5b6',
      'f0e1d2c3-b4a5-4968-8778-695a4b3c2d1e',
    ]);
    expect(t.sqs.calls).toMatchObject([
      {
        name: 'ChangeMessageVisibilityCommand',
        input: {
          QueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo',
          VisibilityTimeout: 10,
        },
      },
    ]);
  });

  it('continues a group after a message went to the FIFO dead-letter queue', async () => {
    const ran: string[] = [];
    const dlq = 'https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq.fifo';
    const t = setup({
      async handler(message) {
        ran.push(message.headers['idempotency-key'] as string);
        if (message.headers['idempotency-key'] === 'A-1') throw new NonRetryableError('bad order');
      },
      deadLetterQueueUrl: dlq,
    });
    expect(await t.handler(fixture('sqs-fifo.json'))).toEqual({ batchItemFailures: [] });
    expect(ran.filter((k) => k.startsWith('A'))).toEqual(['A-1', 'A-2', 'A-3']);
    expect(ran.filter((k) => k.startsWith('B'))).toEqual(['B-1', 'B-2']);
    expect(t.sqs.calls[0]?.input).toMatchObject({
      QueueUrl: dlq,
      MessageBody: '{"orderId":"A","step":1}',
      MessageGroupId: 'order-A',
      MessageDeduplicationId: '11d6ee51-4cc7-4302-9e22-7cd8afdaadf5',
    });
  });

  it('keeps a group in order with concurrency 1 across groups', async () => {
    const ran: string[] = [];
    const t = setup({
      async handler(message) {
        ran.push(message.headers['idempotency-key'] as string);
      },
      concurrency: 1,
    });
    await t.handler(fixture('sqs-fifo.json'));
    expect(ran).toEqual(['A-1', 'A-2', 'A-3', 'B-1', 'B-2']);
  });
});

describe('sqsHandler bad input', () => {
  it('rejects malformed events with typed errors', async () => {
    const t = setup();
    const bad: Array<[unknown, RegExp]> = [
      [{}, /Records array/],
      [{ Records: [null] }, /Records\[0\] must be an object/],
      [
        { Records: [{ ...fixture('sqs-standard.json').Records[0], eventSource: 'aws:kinesis' }] },
        /eventSource must be "aws:sqs"/,
      ],
      [
        { Records: [{ ...fixture('sqs-standard.json').Records[0], eventSourceARN: 'payments' }] },
        /SQS queue ARN/,
      ],
      [
        { Records: [{ ...fixture('sqs-standard.json').Records[0], body: 42 }] },
        /body must be a string/,
      ],
    ];
    for (const [event, message] of bad) {
      const error = await t.handler(event as SqsEventLike).catch((e: unknown) => e);
      expect(isReprocessError(error, 'INVALID_ARGUMENT'), String(message)).toBe(true);
      expect(String(error)).toMatch(message);
    }
    expect(t.seen).toEqual([]);
  });

  it('rejects bad options', () => {
    const store = createMemoryStore();
    const base = { handler: async () => undefined, idempotency: { store } };
    expect(() => sqsHandler({ ...base, deadLetterQueueUrl: DLQ })).toThrow(/needs the sqs client/);
    expect(() => sqsHandler({ ...base, sqs: {} as never })).toThrow(/SQSClient/);
    expect(() => sqsHandler({ ...base, concurrency: 0 })).toThrow(/concurrency/);
    expect(() => sqsHandler({ ...base, queueUrl: '' })).toThrow(/queueUrl/);
    expect(() => sqsHandler({ ...base, queueURL: 'x' } as never)).toThrow(
      /sqsHandler: unknown option "queueURL"/,
    );
  });
});
