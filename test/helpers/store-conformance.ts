/**
 * The one conformance suite every {@link IdempotencyStore} runs: the same cases against the
 * memory store, SQLite, PostgreSQL, MySQL, Redis and DynamoDB, by swapping a factory.
 *
 *   describeStoreConformance('postgres', async () => {
 *     const table = `${RUN_ID}_${++n}`;
 *     const store = createPostgresStore(pool, { table });
 *     return {
 *       store,
 *       restart: async () => createPostgresStore(pool, { table }),
 *       connect: async () => createPostgresStore(otherPool, { table }),
 *       cleanup: async () => pool.query(`DROP TABLE ${table}`),
 *     };
 *   });
 *
 * The factory is called once per case and must return an EMPTY, isolated store (a fresh
 * table, prefix or file): `list` and `purgeExpired` cases count records.
 *
 * Time. A store that reads an injected clock returns it as `clock` and the suite moves it
 * (no real waiting; exact lease and expiry values are checked). A store on a server clock
 * (PostgreSQL `now()`, Redis `TIME`) returns no `clock`: the suite then uses short real
 * leases and TTLs (`realTimeLeaseMs`, default 300 ms) only in the cases that wait for a lease
 * or a TTL to end (takeover, heartbeat, TTL expiry, purge), and sleeps in real time there;
 * every other case holds a 30 s lease, so a slow machine cannot end it mid-case. Only
 * relations between times are checked then (never the local clock).
 *
 * Semantics checked beyond the port's TSDoc (src/idempotency/store.ts):
 * - fenced writes (complete, fail, release, heartbeat, saveStep) succeed only while the
 *   stored token is the caller's AND the record is `in_progress`: a completed or failed
 *   record never changes, even under its own token;
 * - release sets `leaseUntil` to 0 and the next begin with the same fingerprint acquires at
 *   once as a takeover (steps kept, attempts + 1);
 * - tokens are safe integers, greater than every token issued before for the key, also
 *   after `delete` or `purgeExpired` with the clock standing still (a store keeps a
 *   high-water mark, or derives tokens from a clock finer than the test can repeat);
 * - keys are at most 64 UTF-8 bytes (the core always passes 64 hex characters, the suite
 *   also passes metacharacters); step names are any string; results up to 256 KiB.
 *
 * Boundaries (a lease ending exactly now) are not checked: the suite always moves time well
 * past or well before them.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isReprocessError } from '../../src/errors.js';
import type {
  BeginResult,
  IdempotencyRecord,
  IdempotencyStore,
  ListOptions,
  RecordStatus,
} from '../../src/idempotency/store.js';

/** A clock the suite can move. `FakeClock` from `reprocess/testing` is one. */
export interface ControllableClock {
  now(): number;
  advance(ms: number): void | Promise<void>;
}

/** What a factory returns for one case. */
export interface StoreUnderTest {
  /** An empty, isolated store. */
  store: IdempotencyStore;
  /** The clock the store reads, when it reads an injected one. Absent: real time is used. */
  clock?: ControllableClock;
  /**
   * Closes `store` as a process exit would and opens a new store object on the same data.
   * Absent (e.g. the memory store): the restart case is skipped.
   */
  restart?: () => Promise<IdempotencyStore>;
  /**
   * Opens one more store object (another connection or client) on the same data, for the
   * concurrency case. The suite closes it. Absent: every concurrent call uses `store`.
   */
  connect?: () => Promise<IdempotencyStore>;
  /** Closes what the factory opened and drops its data. The suite closes `store` first. */
  cleanup?: () => Promise<void>;
}

export interface ConformanceOptions {
  /** Lease (and short TTL) used when there is no controllable clock. Default 300 ms. */
  realTimeLeaseMs?: number;
  /** Extra real wait after a lease or TTL should have ended. Default 150 ms. */
  realTimeMarginMs?: number;
  /** Concurrent begin calls in the race case. Default 100. */
  concurrency?: number;
  /** Store objects the race is spread over when `connect` is given. Default 4. */
  connections?: number;
}

/** Fingerprints the way the core makes them: 64 hex characters. */
const FP_A = 'a'.repeat(64);
const FP_B = 'b'.repeat(64);

const METACHARACTER_KEYS = [
  "it's a 'quoted' key",
  'double "quoted" \\ backslash',
  '100% _done_ LIKE %_%',
  "'; DROP TABLE records; --",
  "KEYS[1] ARGV[1] redis.call('FLUSHALL')",
  'glob *?[a-z]{tag}:colon',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal placeholder is the point
  '${injection} $1 ? :name @p0',
  'emoji 🎉 ✓ ünïcödé',
  'tab\tnew\nline\rcr',
];

/** Every BMP character from U+0001 to U+00FF plus separators, BOM and JSON-looking text. */
const BINARY_ISH = `${Array.from({ length: 255 }, (_, i) => String.fromCharCode(i + 1)).join('')}\u2028\u2029\uFEFF\uFFFD{"a":[1,"\\u0000"]}\\x00 '%_ 🎉`;

/** A 256 KiB (UTF-8 bytes) result with varied printable characters. */
function bigResult(): string {
  const size = 256 * 1024;
  let state = 12345;
  const chars: string[] = [];
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    chars.push(String.fromCharCode(32 + (state % 95)));
  }
  return chars.join('');
}

function realSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function acquired(result: BeginResult): Extract<BeginResult, { kind: 'acquired' }> {
  if (result.kind !== 'acquired') {
    throw new Error(`expected begin to acquire, got existing ${JSON.stringify(result.record)}`);
  }
  return result;
}

function existing(result: BeginResult): IdempotencyRecord {
  if (result.kind !== 'existing') {
    throw new Error(`expected an existing record, got ${JSON.stringify(result)}`);
  }
  return result.record;
}

function expectToken(token: number): void {
  expect(Number.isSafeInteger(token)).toBe(true);
  expect(token).toBeGreaterThan(0);
}

/**
 * Registers the conformance cases for one store. Call it at the top level of a test file or
 * inside a `describe` (e.g. the body of `describeWithService`).
 */
export function describeStoreConformance(
  name: string,
  factory: () => Promise<StoreUnderTest>,
  options: ConformanceOptions = {},
): void {
  const realLease = options.realTimeLeaseMs ?? 300;
  const margin = options.realTimeMarginMs ?? 150;
  const concurrency = options.concurrency ?? 100;
  const connections = options.connections ?? 4;

  describe(`store conformance: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: IdempotencyStore;
    const extraStores: IdempotencyStore[] = [];

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
    });

    afterEach(async () => {
      for (const extra of extraStores.splice(0)) await extra.close?.();
      await store?.close?.();
      await subject?.cleanup?.();
    });

    const fake = () => subject.clock;
    /** A lease that outlives the case: every case that does not wait for a lease uses it. */
    const lease = () => 30_000;
    /** A lease the case waits out: short in real time, since the suite then really sleeps. */
    const short = () => (fake() ? 30_000 : realLease);
    const ttl = () => (fake() ? 86_400_000 : 60_000);
    /** Lets `ms` pass: moves the fake clock, or sleeps for real with a margin. */
    const pass = async (ms: number) => {
      const clock = fake();
      if (clock) await clock.advance(ms);
      else await realSleep(ms + margin);
    };

    it('acquires a new key and reports it in progress to a second caller', async () => {
      const clock = fake();
      const first = acquired(await store.begin('k-acquire', FP_A, lease(), ttl()));
      expectToken(first.token);
      expect(first.attempts).toBe(1);
      expect(first.steps).toEqual({});
      expect(first.takeover).toBe(false);

      const record = await store.get('k-acquire');
      expect(record).toBeDefined();
      if (!record) return;
      expect(record).toMatchObject({
        key: 'k-acquire',
        fingerprint: FP_A,
        status: 'in_progress',
        token: first.token,
        attempts: 1,
        leaseUntil: first.leaseUntil,
        steps: {},
      });
      expect(record.result).toBeUndefined();
      expect(record.error).toBeUndefined();
      // Both times come from one reading of the store's clock.
      expect(record.expiresAt - record.leaseUntil).toBe(ttl() - lease());
      expect(record.updatedAt).toBeGreaterThanOrEqual(record.createdAt);
      if (clock) {
        const now = clock.now();
        expect(first.leaseUntil).toBe(now + lease());
        expect(record.expiresAt).toBe(now + ttl());
        expect(record.createdAt).toBe(now);
        expect(first.token).toBeGreaterThanOrEqual(now * 1000);
      }

      const second = existing(await store.begin('k-acquire', FP_A, lease(), ttl()));
      expect(second).toEqual(record);
      expect(await store.get('missing-key')).toBeUndefined();
    });

    it('replays a completed record and a remembered failure without acquiring', async () => {
      const clock = fake();
      const { token } = acquired(await store.begin('k-replay', FP_A, lease(), ttl()));
      expect(await store.saveStep('k-replay', token, 'charge', '"ch_1"')).toEqual({ kind: 'ok' });
      if (clock) await clock.advance(1000);
      expect(await store.complete('k-replay', token, '{"invoice":1}', ttl())).toEqual({
        kind: 'ok',
      });
      const record = existing(await store.begin('k-replay', FP_A, lease(), ttl()));
      expect(record).toMatchObject({
        status: 'completed',
        token,
        attempts: 1,
        fingerprint: FP_A,
        result: '{"invoice":1}',
      });
      expect(record.error).toBeUndefined();
      if (clock) {
        expect(record.expiresAt).toBe(clock.now() + ttl());
        expect(record.updatedAt).toBe(clock.now());
      }
      expect(await store.get('k-replay')).toEqual(record);

      const failing = acquired(await store.begin('k-failed', FP_A, lease(), ttl()));
      expect(await store.fail('k-failed', failing.token, '{"code":"DECLINED"}', ttl())).toEqual({
        kind: 'ok',
      });
      const failed = existing(await store.begin('k-failed', FP_A, lease(), ttl()));
      expect(failed).toMatchObject({
        status: 'failed',
        token: failing.token,
        error: '{"code":"DECLINED"}',
      });
      expect(failed.result).toBeUndefined();
    });

    it('never acquires a live record for a different fingerprint', async () => {
      const live = acquired(await store.begin('k-fp', FP_A, lease(), ttl()));
      const whileRunning = existing(await store.begin('k-fp', FP_B, lease(), ttl()));
      expect(whileRunning).toMatchObject({
        fingerprint: FP_A,
        status: 'in_progress',
        token: live.token,
      });

      expect(await store.release('k-fp', live.token)).toEqual({ kind: 'ok' });
      const afterRelease = existing(await store.begin('k-fp', FP_B, lease(), ttl()));
      expect(afterRelease).toMatchObject({ fingerprint: FP_A, token: live.token, attempts: 1 });

      const again = acquired(await store.begin('k-fp', FP_A, lease(), ttl()));
      expect(await store.complete('k-fp', again.token, '"done"', ttl())).toEqual({ kind: 'ok' });
      const completed = existing(await store.begin('k-fp', FP_B, lease(), ttl()));
      expect(completed).toMatchObject({
        fingerprint: FP_A,
        status: 'completed',
        token: again.token,
        result: '"done"',
      });
      expect(await store.get('k-fp')).toEqual(completed);
    });

    it('lets a lease end, then a takeover keeps steps with a greater token and attempts + 1', async () => {
      const first = acquired(await store.begin('k-lease', FP_A, short(), ttl()));
      expect(await store.saveStep('k-lease', first.token, 'charge', '"ch_1"')).toEqual({
        kind: 'ok',
      });
      expect(existing(await store.begin('k-lease', FP_A, short(), ttl())).token).toBe(first.token);

      await pass(short());
      // An ended lease still belongs to its fingerprint.
      expect(existing(await store.begin('k-lease', FP_B, lease(), ttl())).fingerprint).toBe(FP_A);

      const second = acquired(await store.begin('k-lease', FP_A, lease(), ttl()));
      expect(second.token).toBeGreaterThan(first.token);
      expectToken(second.token);
      expect(second.attempts).toBe(2);
      expect(second.takeover).toBe(true);
      expect(second.steps).toEqual({ charge: '"ch_1"' });
      const clock = fake();
      if (clock) expect(second.leaseUntil).toBe(clock.now() + lease());

      expect(await store.complete('k-lease', first.token, '"stale"', ttl())).toEqual({
        kind: 'lease_lost',
      });
      expect(await store.complete('k-lease', second.token, '"fresh"', ttl())).toEqual({
        kind: 'ok',
      });
      expect(await store.get('k-lease')).toMatchObject({
        status: 'completed',
        token: second.token,
        attempts: 2,
        result: '"fresh"',
      });
    });

    it('fences a stale token: complete, fail, saveStep, heartbeat and release write nothing', async () => {
      const stale = acquired(await store.begin('k-fence', FP_A, lease(), ttl()));
      expect(await store.saveStep('k-fence', stale.token, 'a', '1')).toEqual({ kind: 'ok' });
      expect(await store.release('k-fence', stale.token)).toEqual({ kind: 'ok' });
      const current = acquired(await store.begin('k-fence', FP_A, lease(), ttl()));
      expect(current.token).toBeGreaterThan(stale.token);
      const before = await store.get('k-fence');

      const lost = { kind: 'lease_lost' };
      expect(await store.complete('k-fence', stale.token, '"x"', ttl())).toEqual(lost);
      expect(await store.fail('k-fence', stale.token, '"x"', ttl())).toEqual(lost);
      expect(await store.saveStep('k-fence', stale.token, 'b', '2')).toEqual(lost);
      expect(await store.saveStep('k-fence', stale.token, 'a', 'overwritten')).toEqual(lost);
      expect(await store.heartbeat('k-fence', stale.token, lease() * 10)).toEqual(lost);
      expect(await store.release('k-fence', stale.token)).toEqual(lost);
      // A token that was never issued is just as stale.
      expect(await store.complete('k-fence', current.token + 1, '"x"', ttl())).toEqual(lost);
      expect(await store.complete('k-missing', current.token, '"x"', ttl())).toEqual(lost);
      expect(await store.saveStep('k-missing', current.token, 'a', '1')).toEqual(lost);
      expect(await store.heartbeat('k-missing', current.token, lease())).toEqual(lost);
      expect(await store.release('k-missing', current.token)).toEqual(lost);
      expect(await store.fail('k-missing', current.token, '"x"', ttl())).toEqual(lost);

      expect(await store.get('k-fence')).toEqual(before);
      expect(await store.get('k-missing')).toBeUndefined();
      // The current holder is unaffected.
      expect(await store.saveStep('k-fence', current.token, 'b', '2')).toEqual({ kind: 'ok' });
      expect((await store.get('k-fence'))?.steps).toEqual({ a: '1', b: '2' });
    });

    it('never changes a completed or failed record, not even under its own token', async () => {
      const lost = { kind: 'lease_lost' };
      for (const outcome of ['complete', 'fail'] as const) {
        const key = `k-final-${outcome}`;
        const { token } = acquired(await store.begin(key, FP_A, lease(), ttl()));
        const done =
          outcome === 'complete'
            ? await store.complete(key, token, '"r"', ttl())
            : await store.fail(key, token, '"e"', ttl());
        expect(done).toEqual({ kind: 'ok' });
        const before = await store.get(key);
        expect(await store.complete(key, token, '"other"', ttl())).toEqual(lost);
        expect(await store.fail(key, token, '"other"', ttl())).toEqual(lost);
        expect(await store.saveStep(key, token, 's', '1')).toEqual(lost);
        expect(await store.heartbeat(key, token, lease())).toEqual(lost);
        expect(await store.release(key, token)).toEqual(lost);
        expect(await store.get(key)).toEqual(before);
      }
    });

    it('after the TTL, a new fingerprint starts afresh with a greater token', async () => {
      const shortTtl = fake() ? 60_000 : realLease;
      const old = acquired(await store.begin('k-ttl', FP_A, lease(), shortTtl));
      expect(await store.saveStep('k-ttl', old.token, 'charge', '"ch_1"')).toEqual({ kind: 'ok' });
      expect(await store.complete('k-ttl', old.token, '"old"', shortTtl)).toEqual({ kind: 'ok' });
      expect(existing(await store.begin('k-ttl', FP_B, lease(), ttl())).status).toBe('completed');

      await pass(shortTtl);
      const expired = await store.get('k-ttl');
      // `get` returns the record expired or not, unless the store already removed it.
      if (expired) expect(expired.token).toBe(old.token);

      const fresh = acquired(await store.begin('k-ttl', FP_B, lease(), ttl()));
      expect(fresh.token).toBeGreaterThan(old.token);
      expect(fresh.attempts).toBe(1);
      expect(fresh.steps).toEqual({});
      expect(fresh.takeover).toBe(false);
      const record = await store.get('k-ttl');
      expect(record).toMatchObject({
        fingerprint: FP_B,
        status: 'in_progress',
        token: fresh.token,
        attempts: 1,
      });
      // toEqual: toMatchObject takes {} as a subset of any steps.
      expect(record?.steps).toEqual({});
      expect(record?.result).toBeUndefined();
      // The new operation is released and taken over: the old one's steps do not come back.
      expect(await store.release('k-ttl', fresh.token)).toEqual({ kind: 'ok' });
      const resumed = acquired(await store.begin('k-ttl', FP_B, lease(), ttl()));
      expect(resumed.takeover).toBe(true);
      expect(resumed.steps).toEqual({});
    });

    it('release ends the lease at once, keeps steps, and the next begin resumes', async () => {
      const first = acquired(await store.begin('k-release', FP_A, lease(), ttl()));
      expect(await store.saveStep('k-release', first.token, 'charge', '"ch_1"')).toEqual({
        kind: 'ok',
      });
      expect(await store.saveStep('k-release', first.token, 'email', '"em_1"')).toEqual({
        kind: 'ok',
      });
      expect(await store.release('k-release', first.token)).toEqual({ kind: 'ok' });
      expect(await store.get('k-release')).toMatchObject({
        status: 'in_progress',
        token: first.token,
        leaseUntil: 0,
        steps: { charge: '"ch_1"', email: '"em_1"' },
      });

      const next = acquired(await store.begin('k-release', FP_A, lease(), ttl()));
      expect(next.token).toBeGreaterThan(first.token);
      expect(next.attempts).toBe(2);
      expect(next.takeover).toBe(true);
      expect(next.steps).toEqual({ charge: '"ch_1"', email: '"em_1"' });
      expect(await store.release('k-release', next.token)).toEqual({ kind: 'ok' });
      const third = acquired(await store.begin('k-release', FP_A, lease(), ttl()));
      expect(third.attempts).toBe(3);
      expect(third.token).toBeGreaterThan(next.token);
    });

    it('release with a ttl keeps the record that long from now: a late retry resumes its steps', async () => {
      // Created with a short TTL, released two thirds of it later with the same TTL, retried
      // after the first TTL has ended: the retry must take over with the steps, not start a
      // new operation (that would run the charge again).
      const shortTtl = fake() ? 60_000 : realLease * 5;
      // Shorter than the TTL, so that the expiry at creation is the TTL's.
      const leaseMs = fake() ? lease() : realLease;
      const first = acquired(await store.begin('k-late', FP_A, leaseMs, shortTtl));
      expect(await store.saveStep('k-late', first.token, 'charge', '"ch_1"')).toEqual({
        kind: 'ok',
      });
      const before = await store.get('k-late');
      await pass((shortTtl * 2) / 3);
      expect(await store.release('k-late', first.token, shortTtl)).toEqual({ kind: 'ok' });
      const after = await store.get('k-late');
      expect(after?.leaseUntil).toBe(0);
      expect(after?.expiresAt).toBeGreaterThan(before?.expiresAt ?? Number.POSITIVE_INFINITY);
      const clock = fake();
      if (clock) expect(after?.expiresAt).toBe(clock.now() + shortTtl);

      await pass(shortTtl / 2);
      const retry = acquired(await store.begin('k-late', FP_A, leaseMs, shortTtl));
      expect(retry.takeover).toBe(true);
      expect(retry.attempts).toBe(2);
      expect(retry.steps).toEqual({ charge: '"ch_1"' });
      expect(retry.token).toBeGreaterThan(first.token);
    });

    it('release without a ttl leaves the expiry as it is, even one already passed', async () => {
      const shortTtl = fake() ? 60_000 : realLease;
      const leaseMs = fake() ? 30_000 : realLease;
      const first = acquired(await store.begin('k-keep', FP_A, leaseMs, shortTtl));
      const before = await store.get('k-keep');
      await pass(shortTtl);
      expect(await store.release('k-keep', first.token)).toEqual({ kind: 'ok' });
      // The release found the record (it answered ok under the token), so get finds it too.
      const after = await store.get('k-keep');
      expect(after?.leaseUntil).toBe(0);
      expect(after?.expiresAt).toBeDefined();
      expect(after?.expiresAt).toBe(before?.expiresAt);
    });

    it('release with a ttl never shortens the expiry: it is the later of the two', async () => {
      // A lease longer than the ttl makes the expiry at creation the lease's: a release with
      // the shorter ttl must leave it there (expiresAt = max(expiresAt, now + ttl)).
      const hour = 3_600_000;
      const first = acquired(await store.begin('k-longer', FP_A, 2 * hour, hour));
      const before = await store.get('k-longer');
      expect(await store.release('k-longer', first.token, hour)).toEqual({ kind: 'ok' });
      const after = await store.get('k-longer');
      expect(after?.leaseUntil).toBe(0);
      expect(after?.expiresAt).toBeDefined();
      expect(after?.expiresAt).toBe(before?.expiresAt);
    });

    it('heartbeat extends the lease so no one else acquires', async () => {
      const clock = fake();
      const base = short();
      const { token } = acquired(await store.begin('k-heart', FP_A, base, ttl()));
      await pass(base / 2);
      const beat = await store.heartbeat('k-heart', token, base * 2);
      expect(beat.kind).toBe('ok');
      if (beat.kind !== 'ok') return;
      if (clock) expect(beat.leaseUntil).toBe(clock.now() + base * 2);
      expect((await store.get('k-heart'))?.leaseUntil).toBe(beat.leaseUntil);

      // Past the original lease, inside the extended one.
      await pass(base - base / 2);
      expect(existing(await store.begin('k-heart', FP_A, base, ttl())).token).toBe(token);

      await pass(base * 2);
      const taken = acquired(await store.begin('k-heart', FP_A, base, ttl()));
      expect(taken.token).toBeGreaterThan(token);
      expect(await store.heartbeat('k-heart', token, base)).toEqual({ kind: 'lease_lost' });
    });

    it('after delete, begin issues a token greater than any before (clock standing still)', async () => {
      const first = acquired(await store.begin('k-delete', FP_A, lease(), ttl()));
      expect(await store.complete('k-delete', first.token, '"r"', ttl())).toEqual({ kind: 'ok' });
      expect(await store.delete('k-delete')).toBe(true);
      expect(await store.get('k-delete')).toBeUndefined();
      expect(await store.delete('k-delete')).toBe(false);

      const second = acquired(await store.begin('k-delete', FP_B, lease(), ttl()));
      expect(second.token).toBeGreaterThan(first.token);
      expect(second.attempts).toBe(1);
      expect(second.steps).toEqual({});
      expect(second.takeover).toBe(false);

      expect(await store.delete('k-delete')).toBe(true);
      const third = acquired(await store.begin('k-delete', FP_A, lease(), ttl()));
      expect(third.token).toBeGreaterThan(second.token);
    });

    it('list refuses a bad limit, status or cursor with INVALID_ARGUMENT', async () => {
      acquired(await store.begin('k-list-bad', FP_A, lease(), ttl()));
      const bad: Array<[ListOptions, RegExp]> = [
        [{ limit: 0 }, /list limit/],
        [{ limit: 2.5 }, /list limit/],
        [{ status: 'done' as RecordStatus }, /list status/],
        [{ cursor: '%%%' }, /list cursor/],
        [{ cursor: 42 as unknown as string }, /list cursor/],
      ];
      for (const [options, message] of bad) {
        const error = await store.list(options).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isReprocessError(error, ErrorCode.INVALID_ARGUMENT), JSON.stringify(options)).toBe(
          true,
        );
        expect((error as Error).message).toMatch(message);
      }
      // A good page still works after the refusals.
      expect((await store.list({ limit: 1 })).records).toHaveLength(1);
    });

    it('lists records with a status filter and cursor paging', async () => {
      const statuses: Record<string, RecordStatus> = {};
      for (let i = 0; i < 7; i++) {
        const key = `k-list-${i}`;
        const { token } = acquired(await store.begin(key, FP_A, lease(), ttl()));
        if (i < 3) {
          await store.complete(key, token, `"r${i}"`, ttl());
          statuses[key] = 'completed';
        } else if (i < 5) {
          await store.fail(key, token, `"e${i}"`, ttl());
          statuses[key] = 'failed';
        } else {
          statuses[key] = 'in_progress';
        }
      }

      const all = await store.list();
      expect(all.records.map((r) => r.key).sort()).toEqual(Object.keys(statuses).sort());
      expect(all.cursor).toBeUndefined();
      for (const record of all.records) {
        expect(record.status).toBe(statuses[record.key]);
        expect(record).toEqual(await store.get(record.key));
      }

      for (const status of ['completed', 'failed', 'in_progress'] as const) {
        const page = await store.list({ status });
        const expected = Object.keys(statuses).filter((k) => statuses[k] === status);
        expect(page.records.map((r) => r.key).sort()).toEqual(expected.sort());
        expect(page.records.every((r) => r.status === status)).toBe(true);
      }

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.list(cursor === undefined ? { limit: 2 } : { limit: 2, cursor });
        expect(page.records.length).toBeLessThanOrEqual(2);
        seen.push(...page.records.map((r) => r.key));
        cursor = page.cursor;
        pages++;
        expect(pages).toBeLessThan(20);
      } while (cursor !== undefined);
      expect(seen.sort()).toEqual(Object.keys(statuses).sort());
      expect(pages).toBeGreaterThanOrEqual(4);

      const completed: string[] = [];
      cursor = undefined;
      do {
        const page = await store.list(
          cursor === undefined
            ? { status: 'completed', limit: 1 }
            : { status: 'completed', limit: 1, cursor },
        );
        completed.push(...page.records.map((r) => r.key));
        cursor = page.cursor;
      } while (cursor !== undefined);
      expect(completed.sort()).toEqual(['k-list-0', 'k-list-1', 'k-list-2']);
    });

    it('purgeExpired removes only expired records, bounded by limit', async () => {
      const shortTtl = fake() ? 60_000 : realLease;
      for (let i = 0; i < 3; i++) {
        const key = `k-purge-short-${i}`;
        const { token } = acquired(await store.begin(key, FP_A, lease(), ttl()));
        await store.complete(key, token, '"r"', shortTtl);
      }
      const keep = acquired(await store.begin('k-purge-keep', FP_A, lease(), ttl()));
      await store.complete('k-purge-keep', keep.token, '"r"', ttl());
      acquired(await store.begin('k-purge-running', FP_A, lease() * 10, ttl()));
      expect(await store.purgeExpired()).toBe(0);

      await pass(shortTtl);
      expect(await store.purgeExpired({ limit: 2 })).toBe(2);
      expect(await store.purgeExpired()).toBe(1);
      expect(await store.purgeExpired()).toBe(0);
      for (let i = 0; i < 3; i++) expect(await store.get(`k-purge-short-${i}`)).toBeUndefined();
      expect((await store.get('k-purge-keep'))?.status).toBe('completed');
      expect((await store.get('k-purge-running'))?.status).toBe('in_progress');

      const again = acquired(await store.begin('k-purge-short-0', FP_B, lease(), ttl()));
      expect(again.token).toBeGreaterThan(keep.token);
    });

    it(`lets exactly one of ${concurrency} concurrent begin calls on one key acquire`, async () => {
      const stores = [store];
      if (subject.connect) {
        for (let i = 1; i < connections; i++) {
          const extra = await subject.connect();
          extraStores.push(extra);
          stores.push(extra);
        }
      }
      const results = await Promise.all(
        Array.from({ length: concurrency }, (_, i) =>
          (stores[i % stores.length] ?? store).begin('k-race', FP_A, lease(), ttl()),
        ),
      );
      const winners = results.filter((r) => r.kind === 'acquired');
      expect(winners).toHaveLength(1);
      const winner = winners[0];
      if (winner?.kind !== 'acquired') return;
      for (const result of results) {
        if (result.kind === 'existing') {
          expect(result.record.token).toBe(winner.token);
          expect(result.record.status).toBe('in_progress');
        }
      }
      expect((await store.get('k-race'))?.attempts).toBe(1);
    });

    it('keeps records across a restart of the store object', async (context) => {
      if (!subject.restart) {
        context.skip('the factory gives no restart (the store keeps nothing across processes)');
        return;
      }
      const done = acquired(await store.begin('k-restart-done', FP_A, lease(), ttl()));
      await store.saveStep('k-restart-done', done.token, 'charge', '"ch_1"');
      await store.complete('k-restart-done', done.token, '{"ok":true}', ttl());
      const running = acquired(await store.begin('k-restart-running', FP_A, lease(), ttl()));
      await store.saveStep('k-restart-running', running.token, 'charge', '"ch_2"');
      const deleted = acquired(await store.begin('k-restart-deleted', FP_A, lease(), ttl()));
      expect(await store.delete('k-restart-deleted')).toBe(true);
      const before = {
        done: await store.get('k-restart-done'),
        running: await store.get('k-restart-running'),
      };

      store = await subject.restart();
      expect(await store.get('k-restart-done')).toEqual(before.done);
      expect(await store.get('k-restart-running')).toEqual(before.running);
      expect(existing(await store.begin('k-restart-done', FP_A, lease(), ttl())).result).toBe(
        '{"ok":true}',
      );
      expect(await store.saveStep('k-restart-running', running.token, 'email', '"em"')).toEqual({
        kind: 'ok',
      });
      const after = acquired(await store.begin('k-restart-deleted', FP_A, lease(), ttl()));
      expect(after.token).toBeGreaterThan(deleted.token);
      expect(after.token).toBeGreaterThan(running.token);
    });

    it('round-trips keys, step names and results with metacharacters unchanged', async () => {
      for (const key of METACHARACTER_KEYS) {
        expect(new TextEncoder().encode(key).length).toBeLessThanOrEqual(64);
        const { token } = acquired(await store.begin(key, FP_A, lease(), ttl()));
        expect(await store.saveStep(key, token, key, BINARY_ISH)).toEqual({ kind: 'ok' });
        expect(await store.saveStep(key, token, 'plain', key)).toEqual({ kind: 'ok' });
        expect(await store.complete(key, token, `${key}|${BINARY_ISH}`, ttl())).toEqual({
          kind: 'ok',
        });
      }
      for (const key of METACHARACTER_KEYS) {
        const record = existing(await store.begin(key, FP_A, lease(), ttl()));
        expect(record.key).toBe(key);
        expect(record.result).toBe(`${key}|${BINARY_ISH}`);
        expect(record.steps).toEqual({ [key]: BINARY_ISH, plain: key });
        expect(await store.get(key)).toEqual(record);
      }
      const listed = await store.list({ limit: 100 });
      expect(listed.records.map((r) => r.key).sort()).toEqual([...METACHARACTER_KEYS].sort());
      // A key that only looks like a pattern matching the others touches nothing else.
      expect(await store.delete('%')).toBe(false);
      expect(await store.delete('*')).toBe(false);
      for (const key of METACHARACTER_KEYS) expect(await store.delete(key)).toBe(true);
      expect((await store.list()).records).toEqual([]);
    });

    it('refuses a key with a lone surrogate (two such keys would name one UTF-8 record)', async () => {
      for (const key of ['k\uD800', 'k\uDBFF-x', '\uDC00']) {
        await expect(store.begin(key, FP_A, lease(), ttl())).rejects.toMatchObject({
          code: 'INVALID_ARGUMENT',
          message: expect.stringContaining('lone UTF-16 surrogate'),
        });
      }
      // A surrogate pair is well-formed text: kept as any other key.
      const pair = acquired(await store.begin('k-\uD83D\uDE00', FP_A, lease(), ttl()));
      expect((await store.get('k-\uD83D\uDE00'))?.token).toBe(pair.token);
    });

    it('refuses a lone surrogate in a fingerprint, result, error or step (it would not come back as given)', async () => {
      const lone = 'x\uD800y';
      const refused = {
        code: 'INVALID_ARGUMENT',
        message: expect.stringContaining('lone UTF-16 surrogate'),
      };
      await expect(store.begin('k-lone', lone, lease(), ttl())).rejects.toMatchObject(refused);
      const run = acquired(await store.begin('k-lone', FP_A, lease(), ttl()));
      await expect(store.saveStep('k-lone', run.token, lone, 'r')).rejects.toMatchObject(refused);
      await expect(store.saveStep('k-lone', run.token, 's', lone)).rejects.toMatchObject(refused);
      await expect(store.complete('k-lone', run.token, lone, ttl())).rejects.toMatchObject(refused);
      await expect(store.fail('k-lone', run.token, lone, ttl())).rejects.toMatchObject(refused);
      // Nothing was written: the operation is still this run's, and a pair is kept as given.
      const pair = 'ok \uD83D\uDE00';
      expect(await store.complete('k-lone', run.token, pair, ttl())).toEqual({ kind: 'ok' });
      expect(existing(await store.begin('k-lone', FP_A, lease(), ttl())).result).toBe(pair);
    });

    it('keeps steps named like Object members (__proto__, constructor, ...) as plain steps', async () => {
      const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
      // Built from entries: an object literal with a __proto__ key would set its prototype.
      const expected = Object.fromEntries(names.map((name, i) => [name, `r${i}`]));
      const check = (steps: Record<string, string>) => {
        expect(Object.getPrototypeOf(steps)).toBe(Object.prototype);
        expect(Object.keys(steps).sort()).toEqual([...names].sort());
        for (const name of names) {
          expect(Object.hasOwn(steps, name), name).toBe(true);
          expect(steps[name]).toBe(expected[name]);
        }
      };
      const first = acquired(await store.begin('k-proto', FP_A, lease(), ttl()));
      for (const name of names) {
        expect(
          await store.saveStep('k-proto', first.token, name, expected[name] as string),
        ).toEqual({ kind: 'ok' });
      }
      expect(await store.release('k-proto', first.token)).toEqual({ kind: 'ok' });
      const again = acquired(await store.begin('k-proto', FP_A, lease(), ttl()));
      check(again.steps);
      expect(await store.complete('k-proto', again.token, '"done"', ttl())).toEqual({ kind: 'ok' });
      check(existing(await store.begin('k-proto', FP_A, lease(), ttl())).steps);
      check((await store.get('k-proto'))?.steps ?? {});
    });

    it('stores a 256 KiB result and a failure text unchanged', async () => {
      const big = bigResult();
      expect(new TextEncoder().encode(big).length).toBe(256 * 1024);
      const { token } = acquired(await store.begin('k-big', FP_A, lease(), ttl()));
      expect(await store.complete('k-big', token, big, ttl())).toEqual({ kind: 'ok' });
      const record = existing(await store.begin('k-big', FP_A, lease(), ttl()));
      expect(record.result?.length).toBe(big.length);
      expect(record.result === big).toBe(true);

      const failing = acquired(await store.begin('k-big-error', FP_A, lease(), ttl()));
      expect(await store.fail('k-big-error', failing.token, BINARY_ISH, ttl())).toEqual({
        kind: 'ok',
      });
      expect((await store.get('k-big-error'))?.error).toBe(BINARY_ISH);
    });
  });
}
