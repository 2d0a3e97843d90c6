import { connect } from 'node:net';
import { describe } from 'vitest';

/** The local services integration tests talk to, each on 127.0.0.1 at its standard port. */
export const SERVICES = {
  postgres: { port: 5432, url: 'postgres://postgres@127.0.0.1:5432/test' },
  mariadb: { port: 3306, url: 'mysql://root@127.0.0.1:3306/test' },
  redis: { port: 6379, url: 'redis://127.0.0.1:6379' },
  rabbitmq: { port: 5672, url: 'amqp://guest:guest@127.0.0.1:5672' },
  nats: { port: 4222, url: 'nats://127.0.0.1:4222' },
} as const;

export type ServiceName = keyof typeof SERVICES;

const REQUIRED = process.env.REQUIRE_SERVICES === '1';

/** A unique prefix for this test run, so runs never see each other's data. */
export const RUN_ID = `rp${process.pid.toString(36)}${Date.now().toString(36)}`;

function reachable(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const availability = new Map<ServiceName, Promise<boolean>>();

export function serviceUp(name: ServiceName): Promise<boolean> {
  let known = availability.get(name);
  if (!known) {
    known = reachable(SERVICES[name].port);
    availability.set(name, known);
  }
  return known;
}

/**
 * `describe` for tests that need a real server. When the server is not reachable the block
 * is skipped with a visible reason, except under REQUIRE_SERVICES=1 where it fails instead.
 */
export async function describeWithService(
  name: ServiceName,
  title: string,
  body: () => void,
): Promise<void> {
  const up = await serviceUp(name);
  if (up) {
    describe(title, body);
    return;
  }
  if (REQUIRED) {
    describe(title, () => {
      throw new Error(
        `${name} is not reachable on 127.0.0.1:${SERVICES[name].port} and REQUIRE_SERVICES=1`,
      );
    });
    return;
  }
  describe.skip(
    `${title} [skipped: ${name} not reachable on 127.0.0.1:${SERVICES[name].port}]`,
    body,
  );
}
