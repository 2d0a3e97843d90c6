import { redactUrl } from '../../redact-url.js';
import { type NatsConnection, connect } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../../errors.js';

/** Either server URLs (reprocess connects, reconnects and closes) or your own connection. */
export type NatsConnectionOptions =
  | {
      /** `nats://host:4222`, `host:4222`, or several of them. */
      servers: string | readonly string[];
      connection?: undefined;
      /** Client name the server shows (e.g. in `nats server report connections`). */
      connectionName?: string;
    }
  | {
      /** Your connection (from `@nats-io/transport-node`); reprocess never closes it. */
      connection: NatsConnection;
      servers?: undefined;
      connectionName?: undefined;
    };

/** A connection and whether reprocess owns it (and so closes it). */
export interface OpenedNatsConnection {
  connection: NatsConnection;
  owned: boolean;
}

/**
 * Opens the connection an adapter was configured with. Servers get a connection that fails
 * at once when no server answers at start, and reconnects for ever (every 250 ms, jittered)
 * once it has connected; JetStream keeps unacked messages meanwhile.
 */
export async function openNatsConnection(
  options: NatsConnectionOptions,
  defaultName: string,
): Promise<OpenedNatsConnection> {
  if (options.connection !== undefined) return { connection: options.connection, owned: false };
  const servers = typeof options.servers === 'string' ? [options.servers] : [...options.servers];
  const connection = await connect({
    servers,
    name: options.connectionName ?? defaultName,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  return { connection, owned: true };
}

/** Throws {@link InvalidArgumentError} unless exactly one of `servers` and `connection` is usable. */
export function checkNatsConnectionOptions(options: unknown, what: string): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`${what}: options must be an object`);
  }
  const { servers, connection } = options as { servers?: unknown; connection?: unknown };
  if ((servers === undefined) === (connection === undefined)) {
    throw new InvalidArgumentError(`${what}: pass exactly one of servers and connection`);
  }
  if (servers !== undefined) {
    const list = typeof servers === 'string' ? [servers] : servers;
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      list.some(
        (s) => typeof s !== 'string' || s === '' || /^(?!nats|tls|wss?)[a-z]+:\/\//i.test(s),
      )
    ) {
      throw new InvalidArgumentError(
        `${what}: servers must be one or more nats://host:port addresses, got ${JSON.stringify(Array.isArray(servers) ? servers.map((s) => (typeof s === 'string' ? redactUrl(s) : s)) : typeof servers === 'string' ? redactUrl(servers) : servers)}`,
      );
    }
    // Parsed here, as the client would: its own "Invalid URL" error carries the text whole,
    // password included.
    for (const [i, entry] of (list as string[]).entries()) {
      for (const server of entry.split(',')) {
        const text = server.trim();
        try {
          new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `nats://${text}`);
        } catch {
          // The whole entry redacted, not the piece: a password may hold a comma.
          throw new InvalidArgumentError(
            `${what}: servers[${i}] ${JSON.stringify(redactUrl(entry))} is not a list of nats://host:port addresses`,
          );
        }
      }
    }
  }
  if (
    connection !== undefined &&
    (typeof connection !== 'object' ||
      connection === null ||
      typeof (connection as NatsConnection).publish !== 'function')
  ) {
    throw new InvalidArgumentError(`${what}: connection must be a NATS connection`);
  }
}

/** Throws {@link InvalidArgumentError} unless `name` is a valid stream or consumer name. */
export function checkJetStreamName(name: unknown, what: string): asserts name is string {
  // JetStream names become subject tokens: no dots, wildcards, whitespace or path separators.
  if (typeof name !== 'string' || !/^[^.*>\s/\\]{1,200}$/.test(name)) {
    throw new InvalidArgumentError(
      `${what} must be 1 to 200 characters without ".", "*", ">", "/", "\\" or whitespace, got ${JSON.stringify(name)}`,
    );
  }
}

/** Throws {@link InvalidArgumentError} unless `subject` is a valid subject (wildcards if `wildcards`). */
export function checkSubject(
  subject: unknown,
  what: string,
  wildcards: boolean,
): asserts subject is string {
  const ok =
    typeof subject === 'string' &&
    subject !== '' &&
    !/\s/.test(subject) &&
    subject.split('.').every((token, i, all) => {
      if (token === '') return false;
      if (!wildcards) return !token.includes('*') && !token.includes('>');
      if (token === '>') return i === all.length - 1;
      return token === '*' || (!token.includes('*') && !token.includes('>'));
    });
  if (!ok) {
    throw new InvalidArgumentError(
      `${what} must be a NATS subject such as orders.created${wildcards ? ' or orders.>' : ''}, got ${JSON.stringify(subject)}`,
    );
  }
}
