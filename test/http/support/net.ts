import { request as httpRequest } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import { connect } from 'node:net';

/** Listens on 127.0.0.1 at an ephemeral port; resolves with the base URL. */
export function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}

/** Closes a server and its idle keep-alive connections. */
export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close(() => resolve());
  });
}

export interface NodeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Names and values as they came on the wire (names in their case). */
  rawHeaders: string[];
  body: string;
}

/**
 * A request through Node's own `http.request` (a client other than fetch). Header values may
 * be arrays: Node then sends the field once per value.
 */
export function nodeRequest(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string | string[]>;
    body?: string | Buffer;
    /** Send the body in two writes without a length (chunked transfer encoding). */
    chunked?: boolean;
    /**
     * The request line's path, sent as it is (a URL string would be normalized first: its
     * dot segments resolved); the host and port are `url`'s.
     */
    path?: string;
  },
): Promise<NodeResponse> {
  return new Promise((resolve, reject) => {
    const { hostname, port, pathname, search } = new URL(url);
    const req = httpRequest(
      {
        hostname,
        port,
        path: options.path ?? `${pathname}${search}`,
        method: options.method ?? 'POST',
        headers: options.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.chunked && options.body !== undefined) {
      const body = Buffer.from(options.body);
      const half = Math.floor(body.byteLength / 2);
      req.write(body.subarray(0, half));
      req.end(body.subarray(half));
      return;
    }
    req.end(options.body);
  });
}

/**
 * Sends bytes as they are over a raw socket (for header values no client library would send)
 * and resolves with the status line's code.
 */
export function rawRequest(
  base: string,
  head: string,
  body = '',
): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => {
      socket.write(
        Buffer.from(
          `${head}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
          'latin1',
        ),
      );
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, text });
    });
    socket.on('error', reject);
  });
}
