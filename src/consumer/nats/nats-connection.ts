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
  const connection = await connect({
    ...natsConnectOptions(options.servers),
    name: options.connectionName ?? defaultName,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  return { connection, owned: true };
}

/** What `connect()` needs from server URLs: the servers, the credentials and TLS. */
export interface NatsServerOptions {
  /** The servers without their credentials. */
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  /** Set (`{}`: TLS required) when a server is given as `tls://`. */
  tls?: Record<string, never>;
}

/**
 * Reads server URLs as a user writes them, which the NATS client does not: it neither takes
 * `user:password@` (or a lone `token@`) from a URL nor requires TLS for `tls://`, so a
 * password would be dropped (the server answers "Authorization Violation") and a `tls://`
 * server that offers no TLS would be spoken to in plain text, credentials included. Here the
 * credentials become `user`/`pass` (or `token`) and leave the URLs, and any `tls://` server
 * makes TLS required for the connection. Servers that carry different credentials are refused:
 * one connection authenticates one way.
 */
export function natsConnectOptions(servers: string | readonly string[]): NatsServerOptions {
  const entries = typeof servers === 'string' ? [servers] : [...servers];
  const result: NatsServerOptions = { servers: [] };
  let credentials: string | undefined;
  for (const [i, entry] of entries.entries()) {
    for (const piece of entry.split(',')) {
      const text = piece.trim();
      // `host:port` without a scheme is read as nats://, as the client and the checks read it.
      const schemed = /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
      const url = new URL(schemed ? text : `nats://${text}`);
      if (url.protocol === 'tls:') result.tls = {};
      if (url.username === '' && url.password === '') {
        result.servers.push(text);
        continue;
      }
      const found = `${url.username}:${url.password}`;
      if (credentials !== undefined && credentials !== found) {
        throw new InvalidArgumentError(
          `servers[${i}] ${JSON.stringify(redactUrl(entry))}: all servers must carry the same credentials (one connection authenticates one way)`,
        );
      }
      credentials = found;
      const user = decodePart(url.username, entry, i);
      if (url.password === '') result.token = user;
      else {
        result.user = user;
        result.pass = decodePart(url.password, entry, i);
      }
      url.username = '';
      url.password = '';
      result.servers.push(schemed ? url.toString() : url.host);
    }
  }
  return result;
}

function decodePart(text: string, entry: string, i: number): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new InvalidArgumentError(
      `servers[${i}] ${JSON.stringify(redactUrl(entry))}: the user or password is not valid percent-encoding (write % as %25)`,
    );
  }
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
