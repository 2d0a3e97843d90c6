import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IdempotencyStore } from '../../../src/idempotency/store.js';
import type { IdempotencyContext } from '../../../src/idempotency/types.js';
import { createSqliteStore } from '../../../src/stores/sqlite/index.js';

/** What the test endpoint answers. */
export interface AppResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The body clients send to the test endpoint; `mode` picks a behaviour. */
export interface OrderBody {
  item: string;
  mode?:
    | 'ok'
    | 'fail-once'
    | 'throw-once'
    | 'big'
    | 'exact'
    | 'gate'
    | 'status'
    | 'step-then-fail-once';
  /** For `status`: the status to answer with. */
  status?: number;
  /** For `big`: the padding's size in bytes; for `exact`: the whole response body's. */
  size?: number;
  /** For `gate`: the name of the gate to wait on. */
  gate?: string;
}

export class Gate {
  readonly opened: Promise<void>;
  open!: () => void;
  constructor() {
    this.opened = new Promise((resolve) => {
      this.open = resolve;
    });
  }
}

/**
 * The application behind every adapter under test. It counts executions per (tenant, key), so
 * a test can tell a replay from a second execution, and it can be told to fail, throw, answer
 * big, or wait on a gate the test opens.
 */
export class TestApp {
  readonly executions = new Map<string, number>();
  readonly gates = new Map<string, Gate>();
  /** Times the `charge` step really ran. */
  charges = 0;
  private readonly waiters: { id: string; n: number; resolve: () => void }[] = [];

  /** Settles once the handler has started `n` executions for (tenant, key). */
  started(tenant: string | undefined, key: string, n = 1): Promise<void> {
    const id = `${tenant ?? '-'}|${key}`;
    if ((this.executions.get(id) ?? 0) >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ id, n, resolve }));
  }

  count(tenant: string | undefined, key: string | undefined): number {
    return this.executions.get(`${tenant ?? '-'}|${key ?? '-'}`) ?? 0;
  }

  total(): number {
    let n = 0;
    for (const v of this.executions.values()) n += v;
    return n;
  }

  gate(name: string): Gate {
    let gate = this.gates.get(name);
    if (!gate) {
      gate = new Gate();
      this.gates.set(name, gate);
    }
    return gate;
  }

  async handle(input: {
    key: string | undefined;
    tenant: string | undefined;
    body: OrderBody;
    ctx: IdempotencyContext | undefined;
  }): Promise<AppResult> {
    const id = `${input.tenant ?? '-'}|${input.key ?? '-'}`;
    const n = (this.executions.get(id) ?? 0) + 1;
    this.executions.set(id, n);
    for (const waiter of [...this.waiters]) {
      if (waiter.id === id && n >= waiter.n) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    const body = input.body;
    const json = (
      status: number,
      value: unknown,
      extra: Record<string, string> = {},
    ): AppResult => ({
      status,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'set-cookie': 'session=s3cret; HttpOnly',
        'x-execution': String(n),
        location: `/orders/${n}`,
        ...extra,
      },
      body: JSON.stringify(value),
    });
    const order = {
      order: `${input.tenant ?? '-'}:${body.item}`,
      tenant: input.tenant ?? null,
      item: body.item,
      execution: n,
    };
    switch (body.mode) {
      case 'gate':
        await this.gate(body.gate ?? 'default').opened;
        return json(201, order);
      case 'fail-once':
        return n === 1 ? json(503, { error: 'try again' }) : json(201, order);
      case 'throw-once':
        if (n === 1) throw new Error('the handler failed');
        return json(201, order);
      case 'big':
        return json(201, { ...order, padding: 'x'.repeat(body.size ?? 0) });
      case 'exact':
        return {
          status: 201,
          headers: { 'content-type': 'text/plain; charset=utf-8' },
          body: 'x'.repeat(body.size ?? 0),
        };
      case 'status':
        return json(body.status ?? 200, order);
      case 'step-then-fail-once': {
        if (!input.ctx) throw new Error('no idempotency context');
        const charge = await input.ctx.step('charge', () => ++this.charges);
        return n === 1
          ? json(502, { error: 'upstream timeout after the charge' })
          : json(201, { ...order, charge });
      }
      default:
        return json(201, order);
    }
  }
}

/** A SQLite store in a fresh temp directory, and how to remove it. */
export function tempSqliteStore(): {
  store: IdempotencyStore & { close(): Promise<void> };
  cleanup: () => Promise<void>;
} {
  const dir = mkdtempSync(join(tmpdir(), 'reprocess-http-'));
  const store = createSqliteStore({ path: join(dir, 'idempotency.sqlite') });
  return {
    store,
    async cleanup() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A store whose server is down: every call fails as a dropped connection would. */
export function unreachableStore(): IdempotencyStore {
  const down = (): Promise<never> =>
    Promise.reject(
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
    );
  return {
    name: 'unreachable',
    begin: down,
    complete: down,
    fail: down,
    release: down,
    heartbeat: down,
    saveStep: down,
    get: down,
    delete: down,
    list: down,
    purgeExpired: down,
  };
}

/** Wraps a store and counts calls per method (to check round trips and lease bounds). */
export function countingStore<S extends IdempotencyStore>(
  inner: S,
): S & { calls: Map<string, number>; leases: number[] } {
  const calls = new Map<string, number>();
  const leases: number[] = [];
  const wrapped = Object.create(inner) as S & { calls: Map<string, number>; leases: number[] };
  for (const method of [
    'begin',
    'complete',
    'fail',
    'release',
    'heartbeat',
    'saveStep',
    'get',
  ] as const) {
    const original = inner[method].bind(inner) as (...args: unknown[]) => Promise<unknown>;
    (wrapped as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      calls.set(method, (calls.get(method) ?? 0) + 1);
      if (method === 'begin') leases.push(args[2] as number);
      return original(...args);
    };
  }
  wrapped.calls = calls;
  wrapped.leases = leases;
  return wrapped;
}
