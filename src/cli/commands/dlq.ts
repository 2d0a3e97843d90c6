import { redactUrl } from '../../redact-url.js';
import { parseArgs } from 'node:util';
import type { QuarantineFilter, QuarantinedMessage } from '../../consumer/types.js';
import { toMs } from '../../duration.js';
import type { CliIo } from '../io.js';
import { clip, isoTime, textTable } from '../output.js';
import { runResourceCommand } from '../run-command.js';

const HELP = `Usage: reprocess dlq <list|show|redrive> --broker <url> (--queue <name> | --stream <name>) [options]

Inspects quarantined messages and moves them back to where they came from. A redriven
message keeps its payload, headers and idempotency key, so an operation that had completed
replays its result instead of running again.

Commands:
  list               quarantined messages: id, reason, attempts, error code, quarantined, key
  show <id>          one message: history, headers and body
  redrive            move the matching messages back to their source (publish confirmed,
                     then removed from the dead-letter destination)

Broker:
  --broker <url>                 amqp://user:pass@host:5672[/vhost] (RabbitMQ)
                                 or nats://host:4222 (NATS JetStream)
  --queue <name>                 RabbitMQ: the source queue (dead-letter queue <name>.dlq)
  --dead-letter-queue <name>     RabbitMQ: a dead-letter queue with another name
  --stream <name>                JetStream: the source stream (dead-letter stream <name>_DLQ)
  --dead-letter-stream <name>    JetStream: a dead-letter stream with another name

Filters (list and redrive):
  --error-code <code>    only messages whose last error has this code
  --older-than <age>     only messages quarantined at least this long ago (30s, 5m, 24h)
  --key <key>            only messages with this idempotency key
  --limit <n>            at most n messages

Options:
  --rate <n>             redrive: at most n messages a second
  --dry-run              redrive: print what would move, move nothing
  --json                 print JSON
  -h, --help             show this help

Exit codes: 0 ok, 1 failure (broker unreachable, no such message), 2 usage error.`;

type Command = 'list' | 'show' | 'redrive';

interface Parsed {
  command: Command | 'help';
  id?: string;
  broker:
    | { kind: 'amqp'; url: string; queue: string; deadLetterQueue?: string }
    | { kind: 'nats'; servers: string; stream: string; deadLetterStream?: string };
  filter: QuarantineFilter;
  rate?: number;
  dryRun: boolean;
  json: boolean;
}

class UsageError extends Error {}

/** The dead-letter side of a broker, as the command uses it. */
interface OpenedDlq {
  list(filter?: QuarantineFilter): Promise<QuarantinedMessage[]>;
  redrive(filter?: QuarantineFilter & { ratePerSecond?: number }): Promise<number>;
  close(): Promise<void>;
  readonly where: string;
}

function parse(args: string[]): Parsed {
  const { values, positionals } = parseArgs({
    args,
    options: {
      broker: { type: 'string' },
      queue: { type: 'string' },
      'dead-letter-queue': { type: 'string' },
      stream: { type: 'string' },
      'dead-letter-stream': { type: 'string' },
      'error-code': { type: 'string' },
      'older-than': { type: 'string' },
      key: { type: 'string' },
      limit: { type: 'string' },
      rate: { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  const json = values.json === true;
  const dryRun = values['dry-run'] === true;
  if (values.help) {
    return {
      command: 'help',
      broker: { kind: 'nats', servers: '', stream: '' },
      filter: {},
      dryRun,
      json,
    };
  }
  const [command, ...rest] = positionals;
  if (command === undefined) throw new UsageError('missing command: list, show or redrive');
  if (command !== 'list' && command !== 'show' && command !== 'redrive') {
    throw new UsageError(`unknown command "${command}": use list, show or redrive`);
  }
  let id: string | undefined;
  if (command === 'show') {
    if (rest.length !== 1 || !rest[0]) throw new UsageError('show takes exactly one <id>');
    id = rest[0];
  } else if (rest.length > 0) {
    throw new UsageError(`${command} takes no argument, got "${rest.join(' ')}"`);
  }

  const url = values.broker;
  if (url === undefined || url.trim() === '') {
    throw new UsageError('--broker is required: amqp://… (RabbitMQ) or nats://… (JetStream)');
  }
  let broker: Parsed['broker'];
  if (/^amqps?:\/\//i.test(url)) {
    if (values.stream !== undefined || values['dead-letter-stream'] !== undefined) {
      throw new UsageError(
        '--stream and --dead-letter-stream are for nats:// brokers; use --queue',
      );
    }
    if (!values.queue) throw new UsageError('an amqp:// broker needs --queue <source queue>');
    checkBrokerUrl(url);
    broker = { kind: 'amqp', url, queue: values.queue };
    if (values['dead-letter-queue'] !== undefined) {
      broker.deadLetterQueue = values['dead-letter-queue'];
    }
  } else if (/^(nats|tls):\/\//i.test(url)) {
    if (values.queue !== undefined || values['dead-letter-queue'] !== undefined) {
      throw new UsageError('--queue and --dead-letter-queue are for amqp:// brokers; use --stream');
    }
    if (!values.stream) throw new UsageError('a nats:// broker needs --stream <source stream>');
    // A comma-separated list of servers is one URL each.
    for (const server of url.split(',')) checkBrokerUrl(server.trim());
    broker = { kind: 'nats', servers: url, stream: values.stream };
    if (values['dead-letter-stream'] !== undefined) {
      broker.deadLetterStream = values['dead-letter-stream'];
    }
  } else {
    throw new UsageError(
      `--broker must start with amqp://, amqps://, nats:// or tls://; got "${redactUrl(url)}"`,
    );
  }

  const filter: QuarantineFilter = {};
  if (values['error-code'] !== undefined) {
    if (values['error-code'] === '') throw new UsageError('--error-code needs a value');
    filter.errorCode = values['error-code'];
  }
  if (values.key !== undefined) {
    if (values.key === '') throw new UsageError('--key needs a value');
    filter.idempotencyKey = values.key;
  }
  if (values['older-than'] !== undefined) {
    try {
      filter.olderThanMs = toMs(values['older-than'], '--older-than');
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
  }
  if (values.limit !== undefined) {
    if (!/^\d+$/.test(values.limit) || Number(values.limit) < 1) {
      throw new UsageError(`--limit must be a whole number >= 1; got "${values.limit}"`);
    }
    filter.limit = Number(values.limit);
  }
  if (command === 'show' && Object.keys(filter).length > 0) {
    throw new UsageError('show takes an <id>, not filters');
  }
  const parsed: Parsed = { command, broker, filter, dryRun, json };
  if (id !== undefined) parsed.id = id;
  if (values.rate !== undefined) {
    if (command !== 'redrive') throw new UsageError('--rate applies to redrive');
    const rate = Number(values.rate);
    if (!/^\d+(\.\d+)?$/.test(values.rate) || !(rate > 0)) {
      throw new UsageError(
        `--rate must be a number of messages a second > 0; got "${values.rate}"`,
      );
    }
    parsed.rate = rate;
  }
  if (dryRun && command !== 'redrive') throw new UsageError('--dry-run applies to redrive');
  return parsed;
}

/** `reprocess dlq list|show|redrive --broker <url> --queue|--stream <name>`. */
export function run(args: string[], io: CliIo): Promise<number> {
  return runResourceCommand<Parsed, OpenedDlq>(
    {
      name: 'dlq',
      help: HELP,
      parse,
      open: (parsed) => open(parsed.broker),
      execute,
      close: (dlq) => dlq.close(),
    },
    args,
    io,
  );
}

/** Opens the broker's dead-letter side; the driver is loaded only for the broker named. */
async function open(broker: Parsed['broker']): Promise<OpenedDlq> {
  if (broker.kind === 'amqp') {
    const { createAmqpDeadLetterQueue } = await import('../../consumer/amqp/index.js');
    const dlq = createAmqpDeadLetterQueue({
      url: broker.url,
      queue: broker.queue,
      connectionName: 'reprocess dlq',
      ...(broker.deadLetterQueue === undefined ? {} : { deadLetterQueue: broker.deadLetterQueue }),
    });
    // Fail here, clearly, when the broker or the queue is not there.
    await countOrClose(dlq);
    return Object.assign(dlq, { where: `RabbitMQ queue ${dlq.deadLetterQueue}` });
  }
  const { createJetStreamDeadLetterQueue } = await import('../../consumer/nats/index.js');
  const dlq = createJetStreamDeadLetterQueue({
    servers: broker.servers,
    stream: broker.stream,
    connectionName: 'reprocess dlq',
    ...(broker.deadLetterStream === undefined ? {} : { deadLetterStream: broker.deadLetterStream }),
  });
  await countOrClose(dlq);
  return Object.assign(dlq, { where: `JetStream stream ${dlq.deadLetterStream}` });
}

/**
 * Counts once, to fail at open when the broker or the dead-letter destination is not there;
 * closes the connection it opened before rethrowing, or the process would never exit.
 */
async function countOrClose(dlq: { count(): Promise<number>; close(): Promise<void> }) {
  try {
    await dlq.count();
  } catch (error) {
    await dlq.close().catch(() => {});
    throw error;
  }
}

async function execute(parsed: Parsed, dlq: OpenedDlq, io: CliIo): Promise<number> {
  const now = Date.now();
  switch (parsed.command) {
    case 'list': {
      const messages = await dlq.list(parsed.filter);
      if (parsed.json)
        io.out(
          JSON.stringify(
            messages.map((m) => toJson(m, false)),
            null,
            2,
          ),
        );
      else
        io.out(
          messages.length === 0 ? `no quarantined messages in ${dlq.where}` : table(messages, now),
        );
      return 0;
    }
    case 'show': {
      const id = parsed.id as string;
      const found = (await dlq.list()).find((m) => m.id === id);
      if (!found) {
        io.err(`reprocess dlq: no quarantined message with id ${id} in ${dlq.where}`);
        return 1;
      }
      io.out(parsed.json ? JSON.stringify(toJson(found, true), null, 2) : details(found, now));
      return 0;
    }
    case 'redrive': {
      if (parsed.dryRun) {
        const messages = await dlq.list(parsed.filter);
        if (parsed.json) {
          io.out(JSON.stringify({ dryRun: true, wouldMove: messages.map((m) => m.id) }));
        } else {
          io.out(
            messages.length === 0
              ? 'nothing to redrive'
              : `${table(messages, now)}\nwould move ${messages.length} message${messages.length === 1 ? '' : 's'} (dry run)`,
          );
        }
        return 0;
      }
      const moved = await dlq.redrive({
        ...parsed.filter,
        ...(parsed.rate === undefined ? {} : { ratePerSecond: parsed.rate }),
      });
      if (parsed.json) io.out(JSON.stringify({ moved }));
      else io.out(`moved ${moved} message${moved === 1 ? '' : 's'} back from ${dlq.where}`);
      return 0;
    }
    default:
      return 2;
  }
}

// ------------------------------------------------------------------ output

function age(ms: number, now: number): string {
  if (ms <= 0) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

function table(messages: QuarantinedMessage[], now: number): string {
  const head = ['id', 'reason', 'attempts', 'error', 'quarantined', 'key', 'source'];
  // Every field came from a broker or a handler's error: escaped before it reaches a terminal.
  const rows = messages.map((m) => [
    printable(m.id),
    printable(m.history.reason),
    String(m.history.attempts),
    printable(m.history.lastError.code ?? m.history.lastError.name),
    age(m.history.quarantinedAt, now),
    clip(printable(m.history.idempotencyKey ?? '-'), 40),
    printable(m.history.source),
  ]);
  return textTable(head, rows);
}

/**
 * The body as text when it is UTF-8 without control characters (but tab and line breaks),
 * else undefined (shown as base64): escape sequences in a body must not drive the terminal.
 * A byte order mark is kept, so the text has every byte.
 */
function utf8(body: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
  } catch {
    return undefined;
  }
  return CONTROL.test(text) ? undefined : text;
}

/** C0 and C1 controls but tab, line feed and carriage return; DEL. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

/** A value as printed: quoted with escapes when it holds a control character or a line break. */
function printable(value: string): string {
  return CONTROL.test(value) || /[\r\n]/.test(value) ? JSON.stringify(value) : value;
}

function details(m: QuarantinedMessage, now: number): string {
  const h = m.history;
  const text = utf8(m.body);
  const lines = [
    `id:              ${printable(m.id)}`,
    `source:          ${printable(h.source)}`,
    `reason:          ${printable(h.reason)}`,
    `attempts:        ${h.attempts}`,
    `idempotency key: ${printable(h.idempotencyKey ?? '-')}`,
    `first failure:   ${isoTime(h.firstFailureAt)}`,
    `last failure:    ${isoTime(h.lastFailureAt)}`,
    `quarantined:     ${isoTime(h.quarantinedAt)} (${age(h.quarantinedAt, now)})`,
    `last error:      ${printable(h.lastError.name)}${h.lastError.code ? ` [${printable(h.lastError.code)}]` : ''}: ${printable(h.lastError.message)}`,
    'headers:',
    ...Object.entries(m.headers).map(([k, v]) => `  ${printable(k)}: ${printable(v)}`),
    `body (${m.body.byteLength} bytes${text === undefined ? ', not UTF-8 text: base64' : ''}):`,
    text === undefined
      ? clip(Buffer.from(m.body).toString('base64'), 4096)
      : text.length > 4096
        ? `${text.slice(0, 4096)}… (${text.length - 4096} more characters)`
        : text,
  ];
  return lines.join('\n');
}

function toJson(m: QuarantinedMessage, withBody: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: m.id,
    headers: m.headers,
    history: m.history,
    bodyBytes: m.body.byteLength,
  };
  if (withBody) {
    const text = utf8(m.body);
    if (text !== undefined) out.body = text;
    else out.bodyBase64 = Buffer.from(m.body).toString('base64');
  }
  return out;
}

/** A broker URL the drivers can take (a port out of range, a bracket left open): a usage error. */
function checkBrokerUrl(url: string): void {
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--broker is not a valid URL: "${redactUrl(url)}"`);
  }
}
