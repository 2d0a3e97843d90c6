/**
 * Fail-closed behaviour of the Redis store when its server goes away: a connection killed in
 * the middle of a script, a server that is not there, a server that dies and comes back.
 * These run on a private `redis-server` started here (on an ephemeral port), so pausing,
 * killing and restarting it never disturbs anyone else's tests on the shared server.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReprocessError } from '../../src/errors.js';
import { createHash } from 'node:crypto';
import { openRedisStore, type RedisStore } from '../../src/stores/redis/index.js';
import { SCRIPTS } from '../../src/stores/redis/scripts.js';
import { accepting, freePort } from '../helpers/ports.js';
import { RUN_ID } from '../helpers/services.js';
import { clientList } from './fixtures/redis-admin.js';

const hasRedisServer = (() => {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

if (!hasRedisServer && process.env.REQUIRE_SERVICES === '1') {
  throw new Error('redis-server is not installed and REQUIRE_SERVICES=1');
}

describe.skipIf(!hasRedisServer)(
  `redis store outages${hasRedisServer ? '' : ' [skipped: redis-server not installed]'}`,
  () => {
    let port: number;
    let server: ChildProcess | undefined;
    let admin: Redis;
    let store: RedisStore;
    let batched: RedisStore;
    const name = `${RUN_ID}-store`;
    const batchedName = `${RUN_ID}-batched`;

    beforeAll(async () => {
      port = await freePort();
      server = await startServer(port);
      admin = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      admin.on('error', () => {});
      store = await openRedisStore(`redis://127.0.0.1:${port}`, {
        connectionName: name,
        // Far beyond the test timeout: every failure seen here must come from how the client
        // handles a lost connection, not from a command timing out.
        commandTimeoutMs: 600_000,
      });
      batched = await openRedisStore(`redis://127.0.0.1:${port}`, {
        connectionName: batchedName,
        commandTimeoutMs: 600_000,
        batch: true,
      });
    });
    afterAll(async () => {
      await store?.close?.();
      await batched?.close?.();
      admin?.disconnect();
      server?.kill('SIGKILL');
    });

    /** CLIENT PAUSE holds the store's next script on the server, in flight, until killed. */
    async function killMidScript<T>(operation: () => Promise<T>): Promise<unknown> {
      return killMidScripts(() => [operation()]).then((errors) => errors[0]);
    }

    /** The same for several calls started together; resolves with the error of each. */
    async function killMidScripts(
      operations: () => Array<Promise<unknown>>,
      connection = name,
    ): Promise<unknown[]> {
      await admin.client('PAUSE', 10_000, 'WRITE');
      try {
        const pending = Promise.all(
          operations().map((call) =>
            call.then(
              () => new Error('the operation finished although its connection was killed'),
              (error: unknown) => error,
            ),
          ),
        );
        const id = await waitFor(async () => {
          const line = (await clientList(admin)).find(
            (c) => c.name === connection && c.cmd === 'evalsha' && c.flags.includes('b'),
          );
          return line?.id;
        });
        await admin.client('KILL', 'ID', id);
        return await pending;
      } finally {
        await admin.client('UNPAUSE');
      }
    }

    it('a connection killed during begin gives StoreUnavailableError, and the next call works', async () => {
      await store.get('warm-up');
      const error = await killMidScript(() => store.begin('killed-begin', 'fp', 30_000, 60_000));
      expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
      // The killed script never ran (it was held by the pause), and nothing resends it.
      expect(await store.get('killed-begin')).toBeUndefined();
      const next = await store.begin('killed-begin', 'fp', 30_000, 60_000);
      expect(next).toMatchObject({ kind: 'acquired', attempts: 1 });
    });

    it('a connection killed during complete writes nothing; the holder can complete after', async () => {
      const begun = await store.begin('killed-complete', 'fp', 30_000, 60_000);
      if (begun.kind !== 'acquired') throw new Error('expected to acquire');
      const error = await killMidScript(() =>
        store.complete('killed-complete', begun.token, '"r"', 60_000),
      );
      expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
      expect(await store.get('killed-complete')).toMatchObject({
        status: 'in_progress',
        token: begun.token,
      });
      expect(await store.complete('killed-complete', begun.token, '"r"', 60_000)).toEqual({
        kind: 'ok',
      });
      expect(await store.get('killed-complete')).toMatchObject({
        status: 'completed',
        result: '"r"',
      });
    });

    it('a connection killed during a batch fails every call of it; the next calls work', async () => {
      await batched.get('warm-up');
      const keys = Array.from({ length: 10 }, (_, i) => `killed-batch-${i}`);
      const errors = await killMidScripts(
        () => keys.map((key) => batched.begin(key, 'fp', 30_000, 60_000)),
        batchedName,
      );
      for (const [i, error] of errors.entries()) {
        expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
        // The first call on an idle store went alone; the other nine were one script call.
        expect((error as Error).message).toMatch(i === 0 ? /: begin failed/ : /beginMany/);
      }
      for (const key of keys) expect(await batched.get(key)).toBeUndefined();
      const begun = await Promise.all(keys.map((key) => batched.begin(key, 'fp', 30_000, 60_000)));
      for (const result of begun) expect(result).toMatchObject({ kind: 'acquired', attempts: 1 });

      // A batch of completes: nothing written, and the holders complete afterwards.
      const tokens = begun.map((r) => (r.kind === 'acquired' ? r.token : 0));
      const completeErrors = await killMidScripts(
        () => keys.map((key, i) => batched.complete(key, tokens[i] as number, '"r"', 60_000)),
        batchedName,
      );
      for (const [i, error] of completeErrors.entries()) {
        expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
        expect((error as Error).message).toMatch(i === 0 ? /: complete failed/ : /completeMany/);
      }
      for (const key of keys) {
        expect(await batched.get(key)).toMatchObject({ status: 'in_progress' });
      }
      const done = await Promise.all(
        keys.map((key, i) => batched.complete(key, tokens[i] as number, '"r"', 60_000)),
      );
      expect(done.every((d) => d.kind === 'ok')).toBe(true);
    });

    it('a server that stops answering fails the call closed, and the connection is reopened', async () => {
      const stallName = `${RUN_ID}-stall`;
      const watched = await openRedisStore(`redis://127.0.0.1:${port}`, {
        connectionName: stallName,
        commandTimeoutMs: 400,
      });
      try {
        await watched.get('warm-up');
        const before = (await clientList(admin)).find((c) => c.name === stallName)?.id;
        expect(before).toBeDefined();
        // Scripts wait while writes are paused: to the store, a server that stopped answering
        // without closing the socket. Only the watch can end the wait (the pause outlasts the
        // test's timeout).
        await admin.client('PAUSE', 60_000, 'WRITE');
        try {
          const error = await watched
            .begin('stalled', 'fp', 30_000, 60_000)
            .catch((e: unknown) => e);
          expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
          expect(String(error)).toMatch(/begin failed: the connection closed before a reply/);
          // The socket was destroyed and the client connected again (a new connection id).
          const after = await waitFor(async () => {
            const line = (await clientList(admin)).find((c) => c.name === stallName);
            return line !== undefined && line.id !== before ? line.id : undefined;
          });
          expect(after).not.toBe(before);
        } finally {
          await admin.client('UNPAUSE');
        }
        // The held script went with its connection: it never ran, and the next call works.
        expect(await watched.get('stalled')).toBeUndefined();
        expect(await watched.begin('stalled', 'fp', 30_000, 60_000)).toMatchObject({
          kind: 'acquired',
          attempts: 1,
        });
      } finally {
        await watched.close?.();
      }
    });

    it('a frozen server (SIGSTOP) fails calls closed; once it runs again the same store works', async () => {
      const frozenName = `${RUN_ID}-frozen`;
      const watched = await openRedisStore(`redis://127.0.0.1:${port}`, {
        connectionName: frozenName,
        commandTimeoutMs: 400,
      });
      const frozen = server;
      try {
        await watched.get('warm-up');
        // The process stops; its kernel still holds the socket open and even accepts new
        // connections, so nothing closes: only the watch ends the wait.
        frozen?.kill('SIGSTOP');
        try {
          for (const call of [
            () => watched.begin('frozen', 'fp', 30_000, 60_000),
            () => watched.get('frozen'),
          ]) {
            const error = await call().catch((e: unknown) => e);
            expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
          }
        } finally {
          frozen?.kill('SIGCONT');
        }
        // The next calls work, on a new connection. The begin that failed had reached the
        // server's socket buffer: the server ran it when it resumed, after its caller had been
        // told the store was unavailable (and so did not run the operation). Its claim stands,
        // once: the operation is in progress until that lease ends, never acquired twice.
        const next = await waitFor(() =>
          watched.begin('frozen', 'fp', 30_000, 60_000).then(
            (result) => result,
            () => undefined,
          ),
        );
        expect(next).toMatchObject({
          kind: 'existing',
          record: { status: 'in_progress', attempts: 1, fingerprint: 'fp' },
        });
      } finally {
        await watched.close?.();
      }
    });

    it('rejects a commandTimeoutMs that is not a positive number', async () => {
      for (const commandTimeoutMs of [0, -1, Number.NaN, '5000' as unknown as number]) {
        await expect(
          openRedisStore(`redis://127.0.0.1:${port}`, { commandTimeoutMs }),
        ).rejects.toThrow(/commandTimeoutMs must be a number of ms/);
      }
    });

    it('falls back to EVAL when the server forgot the scripts (NOSCRIPT)', async () => {
      await admin.script('FLUSH');
      expect((await store.begin('noscript', 'fp', 30_000, 60_000)).kind).toBe('acquired');
      await admin.script('FLUSH');
      expect((await store.begin('noscript', 'fp', 30_000, 60_000)).kind).toBe('existing');
      expect(await admin.script('EXISTS', sha1(SCRIPTS.begin))).toEqual([1]);
    });

    it('a server that is not there gives StoreUnavailableError at once, not a queued call', async () => {
      const nowhere = await openRedisStore(`redis://127.0.0.1:${await freePort()}`, {
        commandTimeoutMs: 600_000,
      });
      try {
        for (let i = 0; i < 3; i++) {
          const error = await nowhere.begin('k', 'fp', 1000, 60_000).catch((e: unknown) => e);
          expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
        }
      } finally {
        await nowhere.close?.();
      }
    });

    describe('a database the server does not have', () => {
      // A server of 4 databases: /9 is out of range. ioredis reports the refused SELECT as an
      // event and would go on in database 0.
      let small: ChildProcess | undefined;
      let smallPort: number;
      let smallAdmin: Redis | undefined;
      beforeAll(async () => {
        smallPort = await freePort();
      });
      afterAll(async () => {
        smallAdmin?.disconnect();
        await stopServer(small);
      });
      const inDatabaseZero = async () => (await smallAdmin?.keys('*'))?.length ?? 0;

      it('opening on it fails, naming the database; nothing reaches database 0', async () => {
        small = await startServer(smallPort, '--databases', '4');
        smallAdmin = new Redis({ port: smallPort, host: '127.0.0.1', maxRetriesPerRequest: 0 });
        smallAdmin.on('error', () => {});
        const error = await openRedisStore(`redis://127.0.0.1:${smallPort}/9`).catch(
          (e: unknown) => e,
        );
        expect(isReprocessError(error, 'INVALID_ARGUMENT'), String(error)).toBe(true);
        expect(String(error)).toContain('refused database 9');
        // A database it has works, and keeps its records there.
        const three = await openRedisStore(`redis://127.0.0.1:${smallPort}/3`);
        try {
          expect((await three.begin('in-three', 'fp', 30_000, 60_000)).kind).toBe('acquired');
        } finally {
          await three.close?.();
        }
        expect(await inDatabaseZero()).toBe(0);
      });

      it('met on a later connection, it closes the store: calls fail closed, none in database 0', async () => {
        await stopServer(small);
        small = undefined;
        // Opened while the server is away: the open cannot check the database yet.
        const store9 = await openRedisStore(`redis://127.0.0.1:${smallPort}/9`, {
          commandTimeoutMs: 600_000,
        });
        try {
          small = await startServer(smallPort, '--databases', '4');
          await smallAdmin?.flushall();
          for (let i = 0; i < 3; i++) {
            const error = await store9.begin(`k${i}`, 'fp', 1000, 60_000).catch((e: unknown) => e);
            expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          expect(await inDatabaseZero()).toBe(0);
        } finally {
          await store9.close?.();
        }
      });
    });

    it('a server that dies fails calls closed; after it is back the same store works', async () => {
      expect((await store.begin('outage-before', 'fp', 30_000, 60_000)).kind).toBe('acquired');
      const dead = server;
      server = undefined;
      await stopServer(dead);

      for (const call of [
        () => store.begin('outage-during', 'fp', 30_000, 60_000),
        () => store.get('outage-before'),
        () => store.complete('outage-before', 1, '"r"', 60_000),
      ]) {
        const error = await call().catch((e: unknown) => e);
        expect(isReprocessError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true);
      }

      server = await startServer(port);
      // The server lost its data (no persistence here); the store and its client are the same.
      expect(await store.begin('outage-after', 'fp', 30_000, 60_000)).toMatchObject({
        kind: 'acquired',
        attempts: 1,
      });
    });
  },
);

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

async function waitFor<T>(probe: () => Promise<T | undefined>, attempts = 200): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('condition not reached');
}

async function startServer(port: number, ...extra: string[]): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extra],
    { stdio: 'ignore' },
  );
  await waitFor(() => accepting(port).then((ok) => (ok ? true : undefined)), 500);
  return child;
}

async function stopServer(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}
