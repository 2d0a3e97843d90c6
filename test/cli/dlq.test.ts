import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/commands/dlq.js';
import {
  createAmqpSource,
  deleteAmqpTopology,
  resolveAmqpTopology,
} from '../../src/consumer/amqp/index.js';
import {
  createJetStreamSource,
  deleteJetStreamTopology,
  resolveJetStreamTopology,
} from '../../src/consumer/nats/index.js';
import type { MessageSource, QuarantineHistory } from '../../src/consumer/types.js';
import { RUN_ID, describeWithService } from '../helpers/services.js';
import { AMQP_URL, publishTo, testConnection } from '../integration/fixtures/broker-amqp.js';
import { createInbox } from '../integration/fixtures/broker-inbox.js';
import { NATS_URL, publishJs, testNats } from '../integration/fixtures/broker-nats.js';
import { bufferIo } from '../helpers/cli-io.js';

async function cli(...args: string[]) {
  const io = bufferIo();
  const code = await run(args, io);
  return { code, out: io.stdout(), err: io.stderr() };
}

const HOUR = 3_600_000;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Three quarantined messages: two old CARD_DECLINED ones and a fresh TIMEOUT one. */
function histories(
  source: string,
): Array<{ id: string; body: string; history: QuarantineHistory }> {
  const now = Date.now();
  const base = { attempts: 3, firstFailureAt: now - 2 * HOUR, lastFailureAt: now - HOUR, source };
  return [
    {
      id: 'm-1',
      body: '{"order":1}',
      history: {
        ...base,
        lastError: { name: 'PaymentError', code: 'CARD_DECLINED', message: 'declined' },
        reason: 'non_retryable',
        idempotencyKey: 'order-1',
        quarantinedAt: now - HOUR,
      },
    },
    {
      id: 'm-2',
      body: '{"order":2}',
      history: {
        ...base,
        lastError: { name: 'PaymentError', code: 'CARD_DECLINED', message: 'declined' },
        reason: 'non_retryable',
        idempotencyKey: 'order-2',
        quarantinedAt: now - HOUR,
      },
    },
    {
      id: 'm-3',
      body: 'not json \u00ff',
      history: {
        ...base,
        lastError: { name: 'Error', code: 'ETIMEDOUT', message: 'timed out' },
        reason: 'attempts_exhausted',
        idempotencyKey: 'order-3',
        quarantinedAt: now,
      },
    },
  ];
}

/** Publishes each message, takes its delivery and quarantines it with its history. */
async function quarantineAll(
  source: MessageSource,
  publish: (id: string, body: string) => Promise<void>,
  source_name: string,
): Promise<void> {
  const inbox = createInbox();
  await source.start(inbox.onDelivery, { prefetch: 5 });
  for (const m of histories(source_name)) {
    await publish(m.id, m.body);
    const { delivery } = await inbox.next();
    await delivery.quarantine({ ...m.history, source: delivery.source });
  }
  await source.stop();
}

describe('reprocess dlq: usage', () => {
  it('prints help and exits 0 with --help', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: reprocess dlq/);
  });

  it.each([
    [[], /missing command/],
    [['purge'], /unknown command "purge"/],
    [['list'], /--broker is required/],
    [['list', '--broker', 'http://x', '--queue', 'q'], /--broker must start with/],
    [['list', '--broker', AMQP_URL], /needs --queue/],
    [['list', '--broker', NATS_URL], /needs --stream/],
    [['list', '--broker', AMQP_URL, '--stream', 'S'], /for nats:\/\/ brokers/],
    [['list', '--broker', NATS_URL, '--queue', 'q', '--stream', 'S'], /for amqp:\/\/ brokers/],
    [['list', '--broker', AMQP_URL, '--queue', 'q', '--older-than', 'yesterday'], /--older-than/],
    [['list', '--broker', AMQP_URL, '--queue', 'q', '--limit', '0'], /--limit/],
    [['list', '--broker', AMQP_URL, '--queue', 'q', '--rate', '5'], /--rate applies to redrive/],
    [['redrive', '--broker', AMQP_URL, '--queue', 'q', '--rate', 'fast'], /--rate must be/],
    [['list', '--broker', AMQP_URL, '--queue', 'q', '--dry-run'], /--dry-run applies/],
    [['show', '--broker', AMQP_URL, '--queue', 'q'], /show takes exactly one <id>/],
    [['show', 'x', '--broker', AMQP_URL, '--queue', 'q', '--key', 'k'], /not filters/],
    [['list', '--broker', AMQP_URL, '--queue', 'q', '--colour'], /colour/],
    [['list', 'extra', '--broker', AMQP_URL, '--queue', 'q'], /takes no argument/],
    [['list', '--broker', 'amqp://guest:pw-9@127.0.0.1:99999', '--queue', 'q'], /not a valid URL/],
    [['list', '--broker', 'amqp://guest:pw-9@[::1:5672', '--queue', 'q'], /not a valid URL/],
    [['list', '--broker', 'nats://127.0.0.1:4222,nats://[x', '--stream', 'S'], /not a valid URL/],
  ])('%j is a usage error (exit 2, with the usage)', async (args, message) => {
    const r = await cli(...(args as string[]));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).not.toContain('pw-9');
    expect(r.err).toMatch(/Usage: reprocess dlq/);
  });

  it('rejects a queue name the adapter cannot use, as a usage error', async () => {
    const r = await cli('list', '--broker', AMQP_URL, '--queue', 'amq.reserved');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/amq\./);
  });
});

await describeWithService('rabbitmq', 'reprocess dlq on RabbitMQ', () => {
  let admin: ChannelModel;
  const queue = `${RUN_ID}.cli`;
  const topology = resolveAmqpTopology({ queue, delayTiers: ['1s'] });
  const broker = ['--broker', AMQP_URL, '--queue', queue];

  beforeAll(async () => {
    admin = await testConnection();
    const source = createAmqpSource({ url: AMQP_URL, queue, delayTiers: ['1s'] });
    try {
      await quarantineAll(
        source,
        (id, body) => publishTo(admin, queue, body, { messageId: id, headers: { tenant: 'acme' } }),
        queue,
      );
    } finally {
      await source.close();
    }
  });
  afterAll(async () => {
    await deleteAmqpTopology(admin, topology);
    await admin.close();
  });

  it('lists, filters and shows quarantined messages', async () => {
    const all = await cli('list', ...broker, '--json');
    expect(all.code).toBe(0);
    const listed = JSON.parse(all.out) as Array<{ id: string; history: QuarantineHistory }>;
    expect(listed.map((m) => m.id).sort()).toEqual(['m-1', 'm-2', 'm-3']);
    expect(listed.every((m) => m.history.source === queue)).toBe(true);

    const declined = JSON.parse(
      (await cli('list', ...broker, '--json', '--error-code', 'CARD_DECLINED')).out,
    );
    expect(declined.map((m: { id: string }) => m.id).sort()).toEqual(['m-1', 'm-2']);
    const old = JSON.parse((await cli('list', ...broker, '--json', '--older-than', '30m')).out);
    expect(old).toHaveLength(2);
    const byKey = JSON.parse((await cli('list', ...broker, '--json', '--key', 'order-3')).out);
    expect(byKey.map((m: { id: string }) => m.id)).toEqual(['m-3']);

    const text = await cli('list', ...broker);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^id\s+reason\s+attempts\s+error/);
    expect(text.out).toMatch(/m-3\s+attempts_exhausted\s+3\s+ETIMEDOUT/);

    const shown = await cli('show', 'm-3', ...broker);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(/last error:\s+Error \[ETIMEDOUT\]: timed out/);
    expect(shown.out).toMatch(/tenant: acme/);
    expect(shown.out).toContain('not json \u00ff');
    const json = JSON.parse((await cli('show', 'm-1', ...broker, '--json')).out);
    expect(json).toMatchObject({ id: 'm-1', body: '{"order":1}', headers: { tenant: 'acme' } });

    const missing = await cli('show', 'nope', ...broker);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no quarantined message with id nope/);
  });

  it('redrives what the filters select, rate-limited; a dry run moves nothing', async () => {
    const dry = await cli(
      'redrive',
      ...broker,
      '--error-code',
      'CARD_DECLINED',
      '--dry-run',
      '--json',
    );
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.out).wouldMove.sort()).toEqual(['m-1', 'm-2']);
    expect(JSON.parse((await cli('list', ...broker, '--json')).out)).toHaveLength(3);

    const moved = await cli(
      'redrive',
      ...broker,
      '--error-code',
      'CARD_DECLINED',
      '--rate',
      '20',
      '--limit',
      '1',
    );
    expect(moved.code).toBe(0);
    expect(moved.out).toMatch(/moved 1 message back/);
    const left = JSON.parse((await cli('list', ...broker, '--json')).out) as Array<{ id: string }>;
    expect(left).toHaveLength(2);

    // The moved one is back in the source queue, untouched.
    const channel = await admin.createChannel();
    try {
      const back = await channel.get(queue, { noAck: true });
      if (back === false) throw new Error('the redriven message is not in the source queue');
      expect(['m-1', 'm-2']).toContain(back.properties.messageId);
      expect(back.properties.headers?.tenant).toBe('acme');
    } finally {
      await channel.close();
    }
  });

  it('fails with exit 1 when the broker or the queue is not there', async () => {
    const down = await cli('list', '--broker', 'amqp://guest:guest@127.0.0.1:1', '--queue', queue);
    expect(down.code).toBe(1);
    const none = await cli('list', '--broker', AMQP_URL, '--queue', `${RUN_ID}.no-such-queue`);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no-such-queue/);
  });

  it('as a process, exits with 1 when the queue is not there (its connection closed)', () => {
    const started = Date.now();
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'dlq',
        'list',
        '--broker',
        AMQP_URL,
        '--queue',
        `${RUN_ID}.missing`,
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 30_000 },
    );
    expect(child.signal, `still running after ${Date.now() - started} ms`).toBeNull();
    expect(child.status).toBe(1);
    expect(child.stderr).toMatch(/missing/);
  });

  it('shows a body with terminal control bytes as base64, never raw', async () => {
    const id = `ctl\u001b[31m-${RUN_ID}`;
    const body = '\u001b]0;pwned\u0007\u001b[2J\u0000hello';
    const source = createAmqpSource({ url: AMQP_URL, queue, delayTiers: ['1s'] });
    try {
      const inbox = createInbox();
      await source.start(inbox.onDelivery, { prefetch: 5 });
      await publishTo(admin, queue, body, { messageId: id });
      const { delivery } = await inbox.next();
      const [first] = histories(queue);
      if (!first) throw new Error('no history');
      await delivery.quarantine({ ...first.history, idempotencyKey: id });
      await source.stop();
    } finally {
      await source.close();
    }
    const shown = await cli('show', id, ...broker);
    expect(shown.code).toBe(0);
    expect(shown.out).not.toContain('\u001b');
    expect(shown.out).toContain('\\u001b[31m'); // the id, escaped
    const listed = await cli('list', ...broker);
    expect(listed.out).not.toContain('\u001b');
    expect(shown.out).toContain('not UTF-8 text: base64');
    expect(shown.out).toContain(Buffer.from(body).toString('base64'));
    // Out of the way of the other cases' counts.
    expect((await cli('redrive', ...broker, '--key', id, '--json')).code).toBe(0);
  });
});

await describeWithService('nats', 'reprocess dlq on NATS JetStream', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const stream = `${RUN_ID}_CLI`;
  const topology = resolveJetStreamTopology({ stream, durable: 'worker' });
  const broker = ['--broker', NATS_URL, '--stream', stream];

  beforeAll(async () => {
    ({ nc, jsm } = await testNats());
    const source = createJetStreamSource({ servers: NATS_URL, stream, durable: 'worker' });
    try {
      await quarantineAll(
        source,
        (id, body) =>
          publishJs(nc, `${stream}.orders`, body, { msgID: id, headers: { tenant: 'acme' } }),
        stream,
      );
    } finally {
      await source.close();
    }
  });
  afterAll(async () => {
    await deleteJetStreamTopology(jsm, topology);
    await nc.close();
  });

  it('lists with filters, shows by dead-letter sequence, and redrives to the original subject', async () => {
    const listed = JSON.parse((await cli('list', ...broker, '--json')).out) as Array<{
      id: string;
      history: QuarantineHistory;
    }>;
    expect(listed.map((m) => m.history.idempotencyKey)).toEqual(['order-1', 'order-2', 'order-3']);
    const timeouts = JSON.parse(
      (await cli('list', ...broker, '--json', '--error-code', 'ETIMEDOUT')).out,
    );
    expect(timeouts).toHaveLength(1);

    const shown = await cli('show', timeouts[0].id, ...broker);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(/idempotency key: order-3/);

    const moved = await cli('redrive', ...broker, '--older-than', '30m', '--json');
    expect(JSON.parse(moved.out)).toEqual({ moved: 2 });
    const left = JSON.parse((await cli('list', ...broker, '--json')).out);
    expect(left.map((m: { history: QuarantineHistory }) => m.history.idempotencyKey)).toEqual([
      'order-3',
    ]);
    // Both are back on the stream's subject, waiting for the durable consumer.
    const info = await jsm.consumers.info(stream, 'worker');
    expect(info.num_pending).toBe(2);
  });

  it('fails with exit 1 when no NATS server answers', async () => {
    const down = await cli('list', '--broker', 'nats://127.0.0.1:1', '--stream', stream);
    expect(down.code).toBe(1);
  });

  it('fails with exit 1 when the stream has no dead-letter stream (a wrong name)', async () => {
    for (const command of ['list', 'redrive']) {
      const none = await cli(command, '--broker', NATS_URL, '--stream', `${stream}_NOPE`);
      expect(none.code, command).toBe(1);
      expect(none.err).toMatch(/no dead-letter stream/);
    }
  });
});
