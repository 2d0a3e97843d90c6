import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { createConsumer } from '../../src/consumer/consumer.js';
import type { QuarantineHistory } from '../../src/consumer/types.js';
import {
  type JetStreamSource,
  MAX_DELIVER_MARGIN,
  createJetStreamDeadLetterQueue,
  createJetStreamSource,
} from '../../src/consumer/nats/index.js';
import { NonRetryableError, isReprocessError } from '../../src/errors.js';
import { createMemoryStore } from '../../src/stores/memory-store.js';
import { expectOneClosing } from '../helpers/closing.js';
import { runTsx } from '../helpers/run-tsx.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { createInbox, racingRestarts } from './fixtures/broker-inbox.js';
import { NATS_URL, deleteStreams, publishJs, testNats } from './fixtures/broker-nats.js';
import { startTcpProxy } from './fixtures/broker-proxy.js';

function history(overrides: Partial<QuarantineHistory> = {}): QuarantineHistory {
  return {
    attempts: 4,
    firstFailureAt: 1_700_000_000_000,
    lastFailureAt: 1_700_000_009_000,
    lastError: {
      name: 'TypeError',
      code: 'BAD_SHAPE',
      message: 'line one\r\nline two: 100% ünïcode',
    },
    reason: 'non_retryable',
    source: 'set-by-test',
    idempotencyKey: 'key with spaces',
    quarantinedAt: Date.now(),
    ...overrides,
  };
}

await describeWithService('nats', 'NATS JetStream source against the port', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let n = 0;
  const sources: JetStreamSource[] = [];
  const streams: string[] = [];

  beforeAll(async () => {
    ({ nc, jsm } = await testNats());
  });
  afterEach(async () => {
    for (const source of sources.splice(0)) await source.close();
  });
  afterAll(async () => {
    await deleteStreams(jsm, streams);
    await nc.close();
  });

  function newStream(): { stream: string; subject: string } {
    n += 1;
    const stream = `${RUN_ID}_N${n}`;
    streams.push(stream, `${stream}_DLQ`);
    return { stream, subject: `${stream}.orders` };
  }

  it('a first start that fails lets go of its connection: the process exits on its own', async () => {
    const run = await runTsx([
      'test/integration/fixtures/failed-start-exits.ts',
      'nats',
      NATS_URL,
      `${RUN_ID}_missing`,
    ]);
    expect(run.stdout).toContain('start failed');
    expect(run.stdout).not.toContain('still alive');
    expect(run.code).toBe(0);
  }, 20_000);

  it('a stop and starts racing on a restart: every call settles, and one pull subscription is left', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 1 });
    await s.stop();
    expect(await racingRestarts(s, inbox)).toBe('settled');
    await publishJs(nc, subject, 'once', { msgID: `${stream}-once` });
    const { delivery } = await inbox.next();
    await delivery.ack();
    expect(await inbox.arrivesWithin(300)).toBe(false);
  });

  it('closes once when close() is called twice at once, the source and the dead-letter queue', async () => {
    const { stream } = newStream();
    const s = source(stream);
    await s.start(createInbox().onDelivery, { prefetch: 5 });
    await expectOneClosing(() => s.close());

    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    expect(await dlq.count()).toBe(0);
    // The second waits for the first, instead of returning while the connection still closes.
    await expectOneClosing(() => dlq.close());
  });

  function source(stream: string, extra: Record<string, unknown> = {}): JetStreamSource {
    const s = createJetStreamSource({ servers: NATS_URL, stream, durable: 'worker', ...extra });
    sources.push(s);
    return s;
  }

  it('a consumer stopped while its source still starts consumes nothing; the next one gets the message once', async () => {
    const { stream, subject } = newStream();
    const store = createMemoryStore();
    const ran: string[] = [];
    const handler = async (m: { id: string }) => {
      ran.push(m.id);
    };
    const early = createConsumer({ source: source(stream), handler, idempotency: { store } });
    const starting = early.start();
    expect(await early.stop()).toEqual({ finished: 0, released: 0, settling: 0 });
    await starting;
    expect(early.state).toBe('stopped');
    await publishJs(nc, subject, '{}', { msgID: 'after-stop' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ran).toEqual([]);
    const info = await jsm.consumers.info(stream, 'worker');
    expect(info.delivered.consumer_seq).toBe(0); // never delivered, so no attempt was spent

    const late = createConsumer({ source: source(stream), handler, idempotency: { store } });
    await late.start();
    await vi.waitFor(() => expect(ran).toEqual(['after-stop']), { timeout: 5_000 });
    await late.stop();
  });

  it('delivers payload, headers, id, count 1 and the stream timestamp; an ack removes it', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 4 });
    const before = Date.now();
    const body = new Uint8Array([0xff, 0x00, 0x7b]); // not JSON, not UTF-8
    await publishJs(nc, subject, body, { headers: { tenant: 'acme' }, msgID: 'm-1' });
    const { delivery } = await inbox.next();
    expect(delivery.id).toBe('m-1');
    expect([...delivery.body]).toEqual([...body]);
    expect(delivery.headers).toEqual({ tenant: 'acme' });
    expect(delivery.deliveryCount).toBe(1);
    expect(delivery.source).toBe(stream);
    expect(s.name).toBe(stream);
    expect(delivery.publishedAt).toBeGreaterThanOrEqual(before - 1000);
    await delivery.ack();
    await expect(delivery.ack()).rejects.toSatisfy((e) => isReprocessError(e, 'INVALID_ARGUMENT'));
    expect(await inbox.arrivesWithin(300)).toBe(false);
    const info = await jsm.consumers.info(stream, 'worker');
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it('retryLater naks with the delay: JetStream redelivers no sooner, and counts it', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 4 });
    await publishJs(nc, subject, 'x', { msgID: 'm-2' });
    const first = await inbox.next();
    const askedAt = Date.now();
    await first.delivery.retryLater(400);
    const second = await inbox.next();
    expect(second.at - askedAt).toBeGreaterThanOrEqual(400 - 5);
    expect(second.delivery.id).toBe('m-2');
    expect(second.delivery.deliveryCount).toBe(2);
    expect(second.delivery.publishedAt).toBe(first.delivery.publishedAt);
    await second.delivery.ack();
  });

  it('touch() extends AckWait while a handler works; without it the message comes back after AckWait', async () => {
    const { stream, subject } = newStream();
    const s = source(stream, { ackWait: '1s' });
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 1 });
    await publishJs(nc, subject, 'slow', { msgID: 'm-3' });
    const first = await inbox.next();
    // Work for twice AckWait, saying so every 300 ms: no redelivery meanwhile.
    for (let i = 0; i < 7; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await first.delivery.touch?.();
    }
    expect(inbox.all).toHaveLength(1);
    // Now fall silent, as a frozen worker would: JetStream takes it back and delivers it again.
    const again = await inbox.next(5000);
    expect(again.delivery.id).toBe('m-3');
    expect(again.delivery.deliveryCount).toBe(2);
    await again.delivery.ack();
  });

  it('prefetch bounds the unsettled deliveries; settling one lets the next in', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 2 });
    for (let i = 0; i < 5; i++) await publishJs(nc, subject, `m${i}`);
    const a = await inbox.next();
    await inbox.next();
    expect(await inbox.arrivesWithin(300)).toBe(false);
    await a.delivery.ack();
    const c = await inbox.next();
    expect(new TextDecoder().decode(c.delivery.body)).toBe('m2');
    expect(inbox.all).toHaveLength(3);
  });

  it('quarantine publishes to the dead-letter stream (acked), then terms; redrive brings it back under the same id', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 4 });
    await publishJs(nc, subject, '{"bad":', { headers: { tenant: 'acme' }, msgID: 'm-4' });
    const { delivery } = await inbox.next();
    const h = history({ source: delivery.source });
    await delivery.quarantine(h);
    expect(await inbox.arrivesWithin(300)).toBe(false);

    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      const listed = await dlq.list();
      expect(listed).toHaveLength(1);
      expect(listed[0]?.headers).toEqual({ tenant: 'acme' });
      expect(listed[0]?.history).toEqual(h);
      expect(new TextDecoder().decode(listed[0]?.body)).toBe('{"bad":');
      expect(await dlq.list({ errorCode: 'OTHER' })).toEqual([]);
      expect(await dlq.count()).toBe(1);

      expect(await dlq.redrive()).toBe(1);
      expect(await dlq.count()).toBe(0);
      const back = await inbox.next();
      expect(back.delivery.id).toBe('m-4');
      expect(back.delivery.headers).toEqual({ tenant: 'acme' });
      expect(back.delivery.deliveryCount).toBe(1);
      // Quarantined again within JetStream's duplicate window: still stored, not deduplicated away.
      await back.delivery.quarantine(h);
      expect(await dlq.count()).toBe(1);
      expect(await dlq.redrive()).toBe(1);
      const third = await inbox.next();
      expect(third.delivery.id).toBe('m-4');
      await third.delivery.ack();
    } finally {
      await dlq.close();
    }
  });

  it('two sources sharing one dead-letter stream both quarantine into it', async () => {
    const a = newStream();
    const b = newStream();
    const shared = `${RUN_ID}_SHARED${n}`;
    streams.push(shared);
    const inboxes = [createInbox(), createInbox()];
    const [sa, sb] = [
      source(a.stream, { deadLetterStream: shared }),
      source(b.stream, { deadLetterStream: shared }),
    ];
    await sa.start(inboxes[0]!.onDelivery, { prefetch: 1 });
    await sb.start(inboxes[1]!.onDelivery, { prefetch: 1 });
    await publishJs(nc, a.subject, '{"from":"a"}', { msgID: 'a-1' });
    await publishJs(nc, b.subject, '{"from":"b"}', { msgID: 'b-1' });
    for (const [i, inbox] of inboxes.entries()) {
      const { delivery } = await inbox.next();
      await delivery.quarantine(history({ source: delivery.source, idempotencyKey: `k${i}` }));
    }
    const info = await jsm.streams.info(shared);
    expect(info.state.messages).toBe(2);
    expect(info.config.subjects).toHaveLength(2);

    // Each source's dead-letter queue lists, counts and redrives its own messages only.
    const dlqA = createJetStreamDeadLetterQueue({
      servers: NATS_URL,
      stream: a.stream,
      deadLetterStream: shared,
    });
    try {
      expect((await dlqA.list()).map((m) => m.history.source)).toEqual([a.stream]);
      expect(await dlqA.count()).toBe(1);
      expect(await dlqA.redrive()).toBe(1);
      expect(await dlqA.count()).toBe(0);
      expect(await dlqA.list()).toEqual([]);
      const left = await jsm.streams.info(shared);
      expect(left.state.messages).toBe(1); // b's, untouched
      const { delivery } = await inboxes[0]!.next();
      expect(delivery.id).toBe('a-1');
      await delivery.ack();
    } finally {
      await dlqA.close();
    }
  });

  it('a dead-letter stream whose wildcard already takes the subject is used as it is', async () => {
    const a = newStream();
    const shared = `${RUN_ID}_WILD${n}`;
    streams.push(shared);
    // A wildcard of the operator's own (kept apart from the other tests' streams).
    const wildcard = `reprocess.*.${a.stream}.>`;
    await jsm.streams.add({ name: shared, subjects: [wildcard] });
    const inbox = createInbox();
    const s = source(a.stream, { deadLetterStream: shared });
    await s.start(inbox.onDelivery, { prefetch: 1 });
    await publishJs(nc, a.subject, '{}', { msgID: 'w-1' });
    const { delivery } = await inbox.next();
    await delivery.quarantine(history({ source: delivery.source }));
    const info = await jsm.streams.info(shared);
    expect(info.config.subjects).toEqual([wildcard]);
    expect(info.state.messages).toBe(1);
  });

  it('redrives a message put in the dead-letter stream by hand, as its list shows it', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 1 }); // declares the streams
    // No reprocess headers: only the subject it sits under names where it came from.
    await publishJs(nc, `reprocess.dlq.${stream}.${subject}`, '{"by":"hand"}', { msgID: 'h-1' });
    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      expect(await dlq.list()).toHaveLength(1);
      expect(await dlq.redrive()).toBe(1);
      expect(await dlq.count()).toBe(0);
      const { delivery } = await inbox.next();
      expect(new TextDecoder().decode(delivery.body)).toBe('{"by":"hand"}');
      await delivery.ack();
    } finally {
      await dlq.close();
    }
  });

  it('a message without Nats-Msg-Id keeps <stream>:<seq> as its id through quarantine and redrive', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 4 });
    await publishJs(nc, subject, 'anon');
    const { delivery } = await inbox.next();
    expect(delivery.id).toBe(`${stream}:1`);
    await delivery.quarantine(history({ source: delivery.source }));
    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      expect(await dlq.redrive()).toBe(1);
    } finally {
      await dlq.close();
    }
    const back = await inbox.next();
    expect(back.delivery.id).toBe(`${stream}:1`);
    await back.delivery.ack();
  });

  it('two redrives at once move each message once between them, and neither fails', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 20 });
    for (let i = 0; i < 20; i++) {
      await publishJs(nc, subject, `m${i}`, { msgID: `c-${i}` });
      const { delivery } = await inbox.next();
      await delivery.quarantine(history({ source: delivery.source }));
    }
    await s.stop();
    const a = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    const b = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      const [movedA, movedB] = await Promise.all([a.redrive(), b.redrive()]);
      expect(movedA + movedB).toBe(20);
      expect(await a.count()).toBe(0);
      expect((await jsm.streams.info(stream)).state.messages).toBe(20);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('redrive filters by age, key and limit, rate-limits, and leaves the rest', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 10 });
    for (let i = 0; i < 4; i++) {
      await publishJs(nc, subject, `m${i}`, { msgID: `q-${i}` });
      const { delivery } = await inbox.next();
      await delivery.quarantine(
        history({
          source: delivery.source,
          idempotencyKey: `k-${i}`,
          quarantinedAt: i < 2 ? Date.now() - 3_600_000 : Date.now(),
        }),
      );
    }
    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      expect(
        (await dlq.list({ olderThanMs: 600_000 })).map((m) => m.history.idempotencyKey),
      ).toEqual(['k-0', 'k-1']);
      expect(await dlq.list({ limit: 3 })).toHaveLength(3);
      expect(await dlq.redrive({ idempotencyKey: 'k-3' })).toBe(1);
      expect(await dlq.redrive({ olderThanMs: 600_000, limit: 1, ratePerSecond: 50 })).toBe(1);
      expect(await dlq.count()).toBe(2);
      const ids = [(await inbox.next()).delivery.id, (await inbox.next()).delivery.id];
      expect(ids).toEqual(['q-3', 'q-0']);
      await expect(dlq.list({ limit: -1 })).rejects.toSatisfy((e) =>
        isReprocessError(e, 'INVALID_ARGUMENT'),
      );
    } finally {
      await dlq.close();
    }
  });

  it('a large message (900 KiB, near NATS max_payload) survives a nak and quarantine byte for byte', async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 1 });
    const body = new Uint8Array(900 * 1024);
    for (let i = 0; i < body.length; i += 97) body[i] = i % 251;
    await publishJs(nc, subject, body, { msgID: 'big' });
    const first = await inbox.next();
    await first.delivery.retryLater(1);
    const second = await inbox.next();
    expect(Buffer.from(second.delivery.body).equals(Buffer.from(body))).toBe(true);
    await second.delivery.quarantine(
      history({
        source: second.delivery.source,
        lastError: { name: 'E', message: 'y'.repeat(50_000) },
      }),
    );
    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      const [listed] = await dlq.list();
      expect(Buffer.from(listed?.body ?? []).equals(Buffer.from(body))).toBe(true);
      expect(listed?.history.lastError.message.length).toBeLessThanOrEqual(2001);
    } finally {
      await dlq.close();
    }
  });

  it('the connection dropped mid-stream: the source reconnects and keeps consuming; an ack lost in the cut only means a redelivery', async () => {
    const { stream, subject } = newStream();
    const proxy = await startTcpProxy(4222);
    try {
      const s = source(stream, { servers: `nats://127.0.0.1:${proxy.port}`, ackWait: '1s' });
      const inbox = createInbox();
      await s.start(inbox.onDelivery, { prefetch: 4 });
      await publishJs(nc, subject, 'a', { msgID: 'd-1' });
      const first = await inbox.next();
      expect(proxy.dropAll()).toBeGreaterThanOrEqual(1);
      // Written into a dying socket, this ack may be lost: then JetStream redelivers after AckWait.
      await first.delivery.ack();
      await publishJs(nc, subject, 'b', { msgID: 'd-2' });
      const seen: string[] = [];
      for (;;) {
        const next = await inbox.next(10_000);
        seen.push(next.delivery.id);
        await next.delivery.ack();
        if (next.delivery.id === 'd-2') break;
      }
      // d-1 at most once more (a lost ack), never lost; d-2 once.
      expect(seen.filter((id) => id === 'd-2')).toHaveLength(1);
      expect(seen.filter((id) => id === 'd-1').length).toBeLessThanOrEqual(1);
      for (;;) {
        if (!(await inbox.arrivesWithin(1500))) break;
        const late = await inbox.next();
        expect(late.delivery.id).toBe('d-1');
        await late.delivery.ack();
      }
      const info = await jsm.consumers.info(stream, 'worker');
      expect(info.num_ack_pending).toBe(0);
      expect(info.num_pending).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it("quarantines a body near the server's max_payload with its error message cut to fit; one that cannot fit stays, saying why", async () => {
    const { stream, subject } = newStream();
    const s = source(stream);
    const inbox = createInbox();
    await s.start(inbox.onDelivery, { prefetch: 2 });
    const max = nc.info?.max_payload ?? 1024 * 1024;
    const long = history({ lastError: { name: 'Error', message: 'é'.repeat(1900) } });
    const dlq = createJetStreamDeadLetterQueue({ servers: NATS_URL, stream });
    try {
      // Room for the history, not for its whole error message.
      const near = new Uint8Array(max - 1500).fill(120);
      await publishJs(nc, subject, near, { headers: { tenant: 'acme' }, msgID: `${stream}-near` });
      const first = await inbox.next();
      await first.delivery.quarantine({ ...long, source: first.delivery.source });
      const [stored] = await dlq.list();
      expect(stored?.body).toEqual(near);
      expect(stored?.headers).toEqual({ tenant: 'acme' });
      const message = stored?.history.lastError.message ?? '';
      expect(message.endsWith('…')).toBe(true);
      expect(message.length).toBeLessThan(1900);
      expect('é'.repeat(1900).startsWith(message.slice(0, -1))).toBe(true);

      // No room even for the history: refused, the message stays where it is, unsettled.
      const full = new Uint8Array(max - 100).fill(121);
      await publishJs(nc, subject, full, { msgID: `${stream}-full` });
      const second = await inbox.next();
      const refused = await second.delivery
        .quarantine({ ...long, source: second.delivery.source })
        .catch((e: unknown) => e);
      expect(String(refused)).toMatch(/cannot be quarantined: .* max_payload \(\d+ bytes\)/);
      expect(await dlq.count()).toBe(1);
      await second.delivery.ack();
    } finally {
      await dlq.close();
    }
  });

  it('leaves MaxDeliver unlimited (the runtime ends a message) and sets AckWait on the durable consumer', async () => {
    const { stream } = newStream();
    const s = source(stream, { maxAttempts: 4, ackWait: '5s' });
    await s.start(async () => {}, { prefetch: 1 });
    const info = await jsm.consumers.info(stream, 'worker');
    expect(info.config.max_deliver).toBe(-1);
    expect(info.config.ack_wait).toBe(5_000_000_000);
    // An explicit MaxDeliver is set, when it leaves the runtime room to quarantine.
    await s.close();
    const bounded = source(stream, { maxAttempts: 4, maxDeliver: 4 + MAX_DELIVER_MARGIN });
    await bounded.start(async () => {}, { prefetch: 1 });
    expect((await jsm.consumers.info(stream, 'worker')).config.max_deliver).toBe(
      4 + MAX_DELIVER_MARGIN,
    );
  });

  it('keeps a message whose quarantine the dead-letter stream refuses, however many times, until it goes through', async () => {
    // Each refused quarantine brings the message back once more (a nak with a delay): with a
    // MaxDeliver, JetStream would stop delivering it after a few, in neither the consumer's
    // hands nor the dead-letter stream.
    const { stream, subject } = newStream();
    const reasons: string[] = [];
    let runs = 0;
    const consumer = createConsumer({
      source: source(stream, { maxAttempts: 2 }),
      idempotency: { store: createMemoryStore(), operation: 'declined' },
      retry: { maxAttempts: 2, base: 10, cap: 20, jitter: 'none' },
      async handler() {
        runs++;
        throw new NonRetryableError('card declined', { code: 'DECLINED' });
      },
      onEvent: (e) => {
        if (e.type === 'retry_scheduled') reasons.push(e.reason);
      },
    });
    await consumer.start();
    try {
      await jsm.streams.delete(`${stream}_DLQ`);
      await publishJs(nc, subject, JSON.stringify({ n: 1 }), {
        headers: { 'idempotency-key': 'refused-1' },
        msgID: `${stream}-refused`,
      });
      const refusals = 2 + MAX_DELIVER_MARGIN + 3;
      await vi.waitFor(
        () =>
          expect(reasons.filter((r) => r === 'quarantine_failed').length).toBeGreaterThan(refusals),
        { timeout: 20_000, interval: 50 },
      );
      // The dead-letter stream is back: the next delivery quarantines the message.
      await jsm.streams.add({ name: `${stream}_DLQ`, subjects: [`reprocess.dlq.${stream}.>`] });
      await vi.waitFor(
        async () => expect((await jsm.streams.info(`${stream}_DLQ`)).state.messages).toBe(1),
        { timeout: 20_000, interval: 100 },
      );
      expect(runs).toBe(1);
    } finally {
      await consumer.stop({ timeoutMs: 1000 });
    }
  });

  it('rejects bad options with typed errors naming the problem', async () => {
    const bad = (o: Record<string, unknown>) => () =>
      createJetStreamSource({ servers: NATS_URL, stream: 'S', durable: 'd', ...o });
    expect(bad({ stream: 'a.b' })).toThrow(/stream/);
    expect(bad({ durable: '' })).toThrow(/durable/);
    expect(bad({ servers: 'amqp://x' })).toThrow(/servers/);
    // A server the client could not parse: a typed error, its password hidden.
    for (const servers of [
      'nats://u:s3cr3t@bad host:4222',
      ['127.0.0.1:4222', 'nats://u:s3cr3t@[x'],
    ]) {
      const error = (() => {
        try {
          bad({ servers })();
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(isReprocessError(error, 'INVALID_ARGUMENT'), String(error)).toBe(true);
      expect(error?.message).not.toContain('s3cr3t');
    }
    expect(bad({ ackWait: 'soon' })).toThrow(/ackWait/);
    expect(bad({ maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(bad({ maxDeliver: 0 })).toThrow(/maxDeliver/);
    expect(bad({ maxAttempts: 4, maxDeliver: 4 + MAX_DELIVER_MARGIN - 1 })).toThrow(
      /too few deliveries past maxAttempts 4/,
    );
    expect(bad({ subjects: ['a.>.b'] })).toThrow(/subjects\[0\]/);
    const { stream } = newStream();
    const s = source(stream);
    await expect(s.start(async () => {}, { prefetch: 0 })).rejects.toSatisfy((e) =>
      isReprocessError(e, 'INVALID_ARGUMENT'),
    );
  });
});
