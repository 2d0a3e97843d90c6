import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConnectOptions, openNatsConnection } from '../../src/consumer/nats/nats-connection.js';
import { accepting, freePort } from '../helpers/ports.js';
import { SERVICES, describeWithService } from '../helpers/services.js';

/*
 * Server URLs as users write them: credentials in the URL, and tls:// meaning "TLS or
 * nothing". The NATS client reads neither from a URL, so reprocess does.
 */

describe('natsConnectOptions', () => {
  it('takes user and password (percent-decoded) or a lone token out of the URLs', () => {
    expect(natsConnectOptions('nats://app:p%40ss%2Cw@127.0.0.1:4222')).toEqual({
      servers: ['nats://127.0.0.1:4222'],
      user: 'app',
      pass: 'p@ss,w',
    });
    expect(natsConnectOptions(['nats://s3cr3t@a:4222,nats://s3cr3t@b:4222', 'c:4222'])).toEqual({
      servers: ['nats://a:4222', 'nats://b:4222', 'c:4222'],
      token: 's3cr3t',
    });
    expect(natsConnectOptions('nats://127.0.0.1:4222')).toEqual({
      servers: ['nats://127.0.0.1:4222'],
    });
    // host:port without a scheme, as the client takes it.
    expect(natsConnectOptions(['app:pw@10.0.0.1:4222', '[::1]:4222'])).toEqual({
      servers: ['10.0.0.1:4222', '[::1]:4222'],
      user: 'app',
      pass: 'pw',
    });
  });

  it('makes TLS required when a server is tls://', () => {
    expect(natsConnectOptions(['nats://a:4222', 'tls://b:4222'])).toMatchObject({ tls: {} });
    expect(natsConnectOptions('nats://a:4222').tls).toBeUndefined();
  });

  it('refuses servers with different credentials, without showing them', () => {
    const error = (() => {
      try {
        natsConnectOptions(['nats://u:one@a:4222', 'nats://u:two@b:4222']);
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(error?.message).toContain('same credentials');
    expect(error?.message).not.toContain('two');
  });
});

await describeWithService('nats', 'NATS connections from server URLs', () => {
  it('a tls:// server that offers no TLS is refused, not spoken to in plain text', async () => {
    const plain = SERVICES.nats.url.replace('nats://', 'tls://');
    const error = await openNatsConnection({ servers: plain }, 'reprocess test').then(
      async ({ connection }) => {
        await connection.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(String(error)).toMatch(/tls/i);
  });

  it('the plain nats:// URL of the same server connects', async () => {
    const { connection } = await openNatsConnection({ servers: SERVICES.nats.url }, 't');
    await connection.flush();
    await connection.close();
  });
});

const hasNatsServer = (() => {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!hasNatsServer && process.env.REQUIRE_SERVICES === '1') {
  throw new Error('nats-server is not installed and REQUIRE_SERVICES=1');
}

describe.skipIf(!hasNatsServer)(
  `NATS credentials in the URL${hasNatsServer ? '' : ' [skipped: nats-server not installed]'}`,
  () => {
    const servers: ChildProcess[] = [];
    let withPassword: number;
    let withToken: number;

    beforeAll(async () => {
      withPassword = await freePort();
      withToken = await freePort();
      servers.push(await startNats(withPassword, ['--user', 'app', '--pass', 'p@ss,w']));
      servers.push(await startNats(withToken, ['--auth', 's3cr3t']));
    });
    afterAll(() => {
      for (const server of servers) server.kill('SIGKILL');
    });

    const attempt = async (url: string) =>
      openNatsConnection({ servers: url }, 'reprocess test').then(
        async ({ connection }) => {
          await connection.flush();
          await connection.close();
          return 'connected';
        },
        (e: unknown) => String(e),
      );

    it('user and password from the URL authenticate; a wrong one is refused', async () => {
      expect(await attempt(`nats://app:p%40ss%2Cw@127.0.0.1:${withPassword}`)).toBe('connected');
      expect(await attempt(`app:p%40ss%2Cw@127.0.0.1:${withPassword}`)).toBe('connected');
      expect(await attempt(`nats://app:wrong@127.0.0.1:${withPassword}`)).toMatch(/authorization/i);
      expect(await attempt(`nats://127.0.0.1:${withPassword}`)).toMatch(/authorization/i);
    });

    it('a token from the URL authenticates', async () => {
      expect(await attempt(`nats://s3cr3t@127.0.0.1:${withToken}`)).toBe('connected');
      expect(await attempt(`nats://wrong@127.0.0.1:${withToken}`)).toMatch(/authorization/i);
    });
  },
);

async function startNats(port: number, extra: string[]): Promise<ChildProcess> {
  const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), ...extra], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100; i++) {
    if (await accepting(port)) return child;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`nats-server did not start on port ${port}`);
}
