import { redactUrl } from '../../redact-url.js';
import { randomUUID } from 'node:crypto';
import { type Channel, type ConfirmChannel, type Message, type Options, connect } from 'amqplib';
import { InvalidArgumentError } from '../../errors.js';
import { AmqpPublishError } from './amqp-errors.js';
import { PUBLISH_ID } from './amqp-headers.js';

/**
 * What reprocess needs of an amqplib connection. Both amqplib's `ChannelModel` and its
 * `RecoveringChannelModel` (`connect(url, { recovery })`) fit; with the recovering one,
 * reprocess's channels come back by themselves after the connection does.
 */
export interface AmqpConnectionLike {
  createChannel(): Promise<Channel>;
  createConfirmChannel(): Promise<ConfirmChannel>;
  close(): Promise<void>;
}

/** Either a URL (reprocess opens, recovers and closes the connection) or your own connection. */
export type AmqpConnectionOptions =
  | {
      /** `amqp://user:pass@host:5672/vhost` or `amqps://…`. */
      url: string;
      connection?: undefined;
      /** Shown in the RabbitMQ management UI and `rabbitmqctl list_connections`. */
      connectionName?: string;
    }
  | {
      /** Your connection; reprocess never closes it. */
      connection: AmqpConnectionLike;
      url?: undefined;
      connectionName?: undefined;
    };

/** A connection and whether reprocess owns it (and so closes it). */
export interface OpenedAmqpConnection {
  connection: AmqpConnectionLike;
  owned: boolean;
}

/**
 * Opens the connection an adapter was configured with. A URL gets amqplib's recovering
 * connection: it fails at once when the broker is unreachable at start, and reconnects
 * for ever (100 ms doubling to 5 s, jittered) once it has connected.
 */
export async function openAmqpConnection(
  options: AmqpConnectionOptions,
  defaultName: string,
  onError?: (error: unknown) => void,
): Promise<OpenedAmqpConnection> {
  if (options.connection !== undefined) {
    return { connection: options.connection, owned: false };
  }
  const model = await connect(options.url, {
    clientProperties: { connection_name: options.connectionName ?? defaultName },
    recovery: { initialMaxRetries: 0, initialDelay: 100, maxDelay: 5000 },
  });
  // Connection errors reach reprocess as channel closes, and are told to `onError` (a broker
  // closing the connection, a frame amqplib cannot read): an unheard 'error' would crash.
  model.on('error', (error: unknown) => onError?.(error));
  // The recovering connection reports a lost connection (a broker closing it, a frame amqplib
  // cannot read) and a reconnection given up on as events of their own.
  const events = model as unknown as { on(event: string, listener: (e: unknown) => void): void };
  for (const event of ['disconnect', 'reconnect-failed']) {
    events.on(event, (error: unknown) => onError?.(error));
  }
  return { connection: model, owned: true };
}

/** Throws {@link InvalidArgumentError} unless exactly one of `url` and `connection` is usable. */
export function checkAmqpConnectionOptions(options: unknown, what: string): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`${what}: options must be an object`);
  }
  const { url, connection } = options as { url?: unknown; connection?: unknown };
  if ((url === undefined) === (connection === undefined)) {
    throw new InvalidArgumentError(`${what}: pass exactly one of url and connection`);
  }
  if (url !== undefined && (typeof url !== 'string' || !/^amqps?:\/\//i.test(url))) {
    throw new InvalidArgumentError(
      `${what}: url must start with amqp:// or amqps://, got ${JSON.stringify(typeof url === 'string' ? redactUrl(url) : url)}`,
    );
  }
  if (
    connection !== undefined &&
    (typeof connection !== 'object' ||
      connection === null ||
      typeof (connection as AmqpConnectionLike).createConfirmChannel !== 'function')
  ) {
    throw new InvalidArgumentError(
      `${what}: connection must be an amqplib connection (with createChannel and createConfirmChannel)`,
    );
  }
}

/** Throws {@link InvalidArgumentError} unless `name` can be a queue name. */
export function checkQueueName(name: unknown, what: string): asserts name is string {
  // AMQP short strings hold 255 bytes; the `amq.` prefix is reserved by the broker.
  if (
    typeof name !== 'string' ||
    name === '' ||
    Buffer.byteLength(name) > 200 ||
    name.startsWith('amq.')
  ) {
    throw new InvalidArgumentError(
      `${what} must be a non-empty queue name of at most 200 bytes, not starting with "amq.", got ${JSON.stringify(name)}`,
    );
  }
}

/**
 * Publishes through one confirm channel and resolves only when RabbitMQ has confirmed the
 * message: `mandatory` so a missing queue is a failure (a `basic.return`, not a silent drop),
 * persistent so it survives a broker restart. The channel is reopened after it closes.
 */
export class ConfirmPublisher {
  readonly #connection: AmqpConnectionLike;
  #channel: Promise<ConfirmChannel> | undefined;
  readonly #returned = new Set<string>();
  readonly #prefix = randomUUID().slice(0, 8);
  #seq = 0;

  constructor(connection: AmqpConnectionLike) {
    this.#connection = connection;
  }

  /** Publishes `content` to `queue` (through the default exchange) and waits for the confirm. */
  async publish(queue: string, content: Buffer, options: Options.Publish): Promise<void> {
    let channel: ConfirmChannel;
    try {
      channel = await this.#open();
    } catch (error) {
      throw new AmqpPublishError(`could not open a confirm channel to publish to ${queue}`, error);
    }
    this.#seq += 1;
    const id = `${this.#prefix}-${this.#seq}`;
    const headers = {
      ...(options.headers as Record<string, unknown> | undefined),
      [PUBLISH_ID]: id,
    };
    await new Promise<void>((resolve, reject) => {
      try {
        channel.publish(
          '',
          queue,
          content,
          { ...options, headers, mandatory: true, persistent: true },
          (error: unknown) => {
            // RabbitMQ sends basic.return before the ack of an unroutable mandatory message.
            const returned = this.#returned.delete(id);
            if (error) {
              reject(
                new AmqpPublishError(`RabbitMQ did not confirm the publish to ${queue}`, error),
              );
            } else if (returned) {
              reject(
                new AmqpPublishError(
                  `RabbitMQ returned the message: no queue named ${JSON.stringify(queue)}`,
                ),
              );
            } else {
              resolve();
            }
          },
        );
      } catch (error) {
        reject(new AmqpPublishError(`could not publish to ${queue}`, error));
      }
    });
  }

  /** Closes the confirm channel (pending publishes fail). */
  async close(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel !== undefined) await closeQuietly(await channel.catch(() => undefined));
  }

  #open(): Promise<ConfirmChannel> {
    if (this.#channel !== undefined) return this.#channel;
    const opening = this.#connection.createConfirmChannel().then((channel) => {
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.#channel === opening) this.#channel = undefined;
      });
      channel.on('return', (message: Message) => {
        const id = message.properties.headers?.[PUBLISH_ID];
        if (typeof id === 'string') this.#returned.add(id);
      });
      return channel;
    });
    this.#channel = opening;
    opening.catch(() => {
      if (this.#channel === opening) this.#channel = undefined;
    });
    return opening;
  }
}

/** Closes a channel, ignoring that it may be closed already. */
export async function closeQuietly(channel: { close(): Promise<void> } | undefined): Promise<void> {
  if (!channel) return;
  try {
    await channel.close();
  } catch {
    // Already closed (by us, the broker, or the connection going away).
  }
}
