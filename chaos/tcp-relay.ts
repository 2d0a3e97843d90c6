import { type Server, type Socket, connect, createServer } from 'node:net';

/**
 * A TCP relay on 127.0.0.1 in front of one real server (a broker or the idempotency store).
 * The workers connect through it, so the run can do to their connections what a network or a
 * dying server does, without touching the shared server or anyone else's connections:
 *
 *   cut()   every relayed connection is destroyed now (the client sees its socket close);
 *           new connections are accepted at once (a network blip, a proxy restart)
 *   down()  the relay stops listening and destroys every connection: connecting is refused
 *           (ECONNREFUSED) until up(): an outage of the server as its clients see it
 *   up()    listening again, on the same port
 */
export interface TcpRelay {
  readonly port: number;
  readonly targetPort: number;
  readonly isDown: boolean;
  cut(): number;
  down(): Promise<number>;
  up(): Promise<void>;
  close(): Promise<void>;
}

/** Starts a relay to `127.0.0.1:targetPort` on a free port. */
export async function startTcpRelay(targetPort: number): Promise<TcpRelay> {
  const pairs = new Set<[Socket, Socket]>();
  let server: Server = newServer();
  let down = false;
  let closed = false;

  function newServer(): Server {
    return createServer((client) => {
      const upstream = connect({ host: '127.0.0.1', port: targetPort });
      const pair: [Socket, Socket] = [client, upstream];
      pairs.add(pair);
      const end = () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  function destroyAll(): number {
    const n = pairs.size;
    for (const [client, upstream] of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
    return n;
  }

  const port = await listen(server, 0);

  return {
    port,
    targetPort,
    get isDown() {
      return down;
    },
    cut: destroyAll,
    async down() {
      if (down || closed) return 0;
      down = true;
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      const n = destroyAll();
      await closing;
      return n;
    },
    async up() {
      if (!down || closed) return;
      // The port was ours a moment ago; retry briefly in case the kernel still holds it.
      for (let attempt = 1; ; attempt++) {
        server = newServer();
        try {
          await listen(server, port);
          break;
        } catch (error) {
          if (attempt >= 50) throw error;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      down = false;
    },
    async close() {
      if (closed) return;
      closed = true;
      destroyAll();
      if (!down) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', onError);
      const address = server.address();
      if (address === null || typeof address === 'string') {
        reject(new Error('the relay has no TCP address'));
        return;
      }
      resolve(address.port);
    });
  });
}
