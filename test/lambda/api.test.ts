import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2WithJWTAuthorizer,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
} from 'aws-lambda';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { createMemoryStore } from '../../src/idempotency/index.js';
import {
  idempotencyContext,
  idempotentApiGatewayHandler,
  idempotentHttpApiHandler,
  idempotentRestApiHandler,
} from '../../src/lambda/api/index.js';
import { Gate, countingStore, tempSqliteStore, unreachableStore } from '../http/support/app.js';
import { fixture, lambdaContext } from './support.js';

const v1Post = () => fixture<APIGatewayProxyEvent>('rest-api-v1-post.json');
const v1Binary = () => fixture<APIGatewayProxyEvent>('rest-api-v1-post-base64.json');
const v1Get = () => fixture<APIGatewayProxyEvent>('rest-api-v1-get.json');
const v2Post = () => fixture<APIGatewayProxyEventV2WithJWTAuthorizer>('http-api-v2-post.json');

/** A v1 event with another key (in both header maps, as API Gateway sends it). */
function withV1Key(event: APIGatewayProxyEvent, key: string | string[]): APIGatewayProxyEvent {
  const values = Array.isArray(key) ? key : [key];
  event.headers['Idempotency-Key'] = values.join(',');
  event.multiValueHeaders['Idempotency-Key'] = values;
  return event;
}

function withV2Key(event: APIGatewayProxyEventV2WithJWTAuthorizer, key: string) {
  event.headers['idempotency-key'] = key;
  return event;
}

const sqlite = tempSqliteStore();
afterAll(() => sqlite.cleanup());

describe('API Gateway REST API (v1) handler', () => {
  let runs = 0;
  const handler = idempotentRestApiHandler(
    async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
      runs++;
      const order = JSON.parse(event.body ?? '{}') as { item: string };
      return {
        statusCode: 201,
        headers: { 'Content-Type': 'application/json', Location: `/orders/${runs}` },
        multiValueHeaders: { 'Set-Cookie': ['session=s3cret', 'seen=1'] },
        body: JSON.stringify({
          order: order.item,
          by: event.requestContext.authorizer?.principalId,
          run: runs,
        }),
      };
    },
    {
      store: sqlite.store,
      scope: (event) => event.requestContext.authorizer?.principalId as string | undefined,
    },
  );

  it('runs once and returns its own result; a repeat gets the stored one with Idempotent-Replayed', async () => {
    const before = runs;
    const first = await handler(v1Post(), lambdaContext());
    expect(first).toMatchObject({
      statusCode: 201,
      multiValueHeaders: { 'Set-Cookie': ['session=s3cret', 'seen=1'] },
    });
    const again = await handler(v1Post(), lambdaContext());
    expect(again).toEqual({
      statusCode: 201,
      headers: {
        'content-type': 'application/json',
        'idempotent-replayed': 'true',
        location: `/orders/${before + 1}`,
      },
      body: first.body,
      isBase64Encoded: false,
    });
    expect(runs).toBe(before + 1);
  });

  it('reads multi-value headers: two Idempotency-Key values are a 400 problem', async () => {
    const before = runs;
    const result = await handler(withV1Key(v1Post(), ['k-1', 'k-2']), lambdaContext());
    expect(result.statusCode).toBe(400);
    expect(result.headers?.['content-type']).toBe('application/problem+json');
    expect(JSON.parse(result.body)).toMatchObject({
      type: 'https://reprocess.dev/problems/idempotency-key-invalid',
      code: 'IDEMPOTENCY_KEY_INVALID',
    });
    const missing = v1Post();
    delete missing.headers['Idempotency-Key'];
    delete missing.multiValueHeaders['Idempotency-Key'];
    expect((await handler(missing, lambdaContext())).statusCode).toBe(400);
    expect(runs).toBe(before);
  });

  it('lets a GET through without a key', async () => {
    const get = idempotentRestApiHandler(
      async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => ({
        statusCode: 200,
        body: `listed ${event.queryStringParameters?.source}`,
      }),
      { store: sqlite.store },
    );
    expect(await get(v1Get(), lambdaContext())).toEqual({ statusCode: 200, body: 'listed web' });
  });

  it('decodes base64 bodies: the fingerprint is over the bytes, however they were encoded', async () => {
    let uploads = 0;
    const upload = idempotentRestApiHandler(
      async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
        uploads++;
        const bytes = Buffer.from(event.body ?? '', 'base64');
        return {
          statusCode: 201,
          headers: { 'content-type': 'application/octet-stream' },
          body: Buffer.from(bytes.reverse()).toString('base64'),
          isBase64Encoded: true,
        };
      },
      { store: sqlite.store },
    );
    const first = await upload(v1Binary(), lambdaContext());
    const replay = await upload(v1Binary(), lambdaContext());
    expect(replay).toMatchObject({ statusCode: 201, isBase64Encoded: true, body: first.body });
    expect(replay.headers?.['idempotent-replayed']).toBe('true');
    // The same key with other bytes is a reuse.
    const changed = v1Binary();
    changed.body = Buffer.from('not the same file').toString('base64');
    expect((await upload(changed, lambdaContext())).statusCode).toBe(422);
    expect(uploads).toBe(1);
  });

  it('refuses a v2 event', async () => {
    await expect(handler(v2Post() as never, lambdaContext())).rejects.toThrow(InvalidArgumentError);
  });
});

describe('API Gateway HTTP API (v2) handler', () => {
  it('replays structured results without their cookies, scoped by the JWT subject', async () => {
    let runs = 0;
    const handler = idempotentHttpApiHandler(
      async (
        event: APIGatewayProxyEventV2WithJWTAuthorizer,
      ): Promise<APIGatewayProxyStructuredResultV2> => {
        runs++;
        const order = JSON.parse(Buffer.from(event.body ?? '', 'base64').toString('utf8')) as {
          item: string;
        };
        return {
          statusCode: 201,
          headers: { 'content-type': 'application/json' },
          cookies: ['session=new'],
          body: JSON.stringify({
            order: order.item,
            tenant: event.requestContext.authorizer.jwt.claims.sub,
            run: runs,
          }),
        };
      },
      {
        store: sqlite.store,
        scope: (event) => String(event.requestContext.authorizer.jwt.claims.sub),
      },
    );
    const first = await handler(v2Post(), lambdaContext());
    expect(first).toMatchObject({ statusCode: 201, cookies: ['session=new'] });
    const again = await handler(v2Post(), lambdaContext());
    expect(again).toEqual({
      statusCode: 201,
      headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
      body: (first as APIGatewayProxyStructuredResultV2).body,
      isBase64Encoded: false,
    });
    // Another tenant, same key and body: another operation.
    const other = v2Post();
    other.requestContext.authorizer.jwt.claims.sub = 'tenant-globex';
    const otherResult = (await handler(
      other,
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    expect(JSON.parse(otherResult.body ?? '')).toMatchObject({ tenant: 'tenant-globex', run: 2 });
    expect(runs).toBe(2);
  });

  it('treats a plain returned object as API Gateway does (200, JSON) when replaying it', async () => {
    const handler = idempotentHttpApiHandler(async () => ({ accepted: true }), {
      store: createMemoryStore(),
    });
    const event = withV2Key(v2Post(), 'plain-object');
    expect(await handler(event, lambdaContext())).toEqual({ accepted: true });
    expect(await handler(withV2Key(v2Post(), 'plain-object'), lambdaContext())).toEqual({
      statusCode: 200,
      headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
      body: '{"accepted":true}',
      isBase64Encoded: false,
    });
  });

  it('keeps a decoded # or ? or \\ of an HTTP API path in the route: another path runs, another query is a 422', async () => {
    // An HTTP API hands Lambda the path decoded: `/orders/a%23one` arrives as `/orders/a#one`.
    const seen: string[] = [];
    const handler = idempotentHttpApiHandler(
      async (event: APIGatewayProxyEventV2WithJWTAuthorizer) => {
        seen.push(`${event.rawPath}?${event.rawQueryString}`);
        return { statusCode: 201, body: `made for ${event.rawPath}` };
      },
      { store: createMemoryStore() },
    );
    const call = (rawPath: string, rawQueryString: string) => {
      const event = withV2Key(v2Post(), 'decoded-path');
      event.rawPath = rawPath;
      event.rawQueryString = rawQueryString;
      return handler(event, lambdaContext()) as Promise<APIGatewayProxyStructuredResultV2>;
    };
    expect((await call('/orders/a#one', 'amount=5')).body).toBe('made for /orders/a#one');
    const other = await call('/orders/a#two', 'amount=500');
    expect(other.body).toBe('made for /orders/a#two');
    expect(other.headers?.['idempotent-replayed']).toBeUndefined();
    expect((await call('/orders/a#one', 'amount=500')).statusCode).toBe(422);
    expect((await call('/orders/a?b', '')).body).toBe('made for /orders/a?b');
    expect((await call('/orders/a\\b', '')).body).toBe('made for /orders/a\\b');
    expect((await call('/orders/a/b', '')).body).toBe('made for /orders/a/b');
    expect((await call('/orders/%zz/../refunds', '')).body).toBe('made for /orders/%zz/../refunds');
    expect((await call('/refunds', '')).body).toBe('made for /refunds');
    expect((await call('/orders/a#one', 'amount=5')).headers?.['idempotent-replayed']).toBe('true');
    expect(seen).toHaveLength(7);
  });

  it('answers 409 with Retry-After while the first invocation runs: at most the time its lease has left', async () => {
    const gate = new Gate();
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const handler = idempotentApiGatewayHandler(
      async () => {
        started();
        await gate.opened;
        return { statusCode: 201, body: 'made' };
      },
      // The first invocation's lease is its remaining 8s; the hint may go up to a minute.
      { store: createMemoryStore(), inProgressRetryAfter: '1m' },
    );
    const first = handler(withV2Key(v2Post(), 'busy'), lambdaContext(8_000));
    await running;
    const busy = (await handler(
      withV2Key(v2Post(), 'busy'),
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    expect(busy.statusCode).toBe(409);
    expect(busy.headers?.['retry-after']).toBe('8');
    gate.open();
    expect(await first).toEqual({ statusCode: 201, body: 'made' });
  });

  it("bounds the lease by the invocation's remaining time, and gives the handler its steps", async () => {
    const store = countingStore(createMemoryStore());
    const handler = idempotentApiGatewayHandler(
      async (event: APIGatewayProxyEventV2WithJWTAuthorizer) => {
        const charge = await idempotencyContext(event)?.step('charge', () => 'ch_1');
        return { statusCode: 201, body: String(charge) };
      },
      { store, lease: '30s' },
    );
    expect(await handler(withV2Key(v2Post(), 'lease-1'), lambdaContext(2_500))).toEqual({
      statusCode: 201,
      body: 'ch_1',
    });
    await handler(withV2Key(v2Post(), 'lease-2'), lambdaContext(900_000));
    expect(store.leases).toEqual([2_500, 30_000]);
  });

  it('never renews the lease past the end of the invocation', async () => {
    const clock = new FakeClock();
    const memory = createMemoryStore({ clock });
    const beats: Array<{ at: number; leaseMs: number }> = [];
    const store = Object.create(memory) as typeof memory;
    store.heartbeat = (key, token, leaseMs) => {
      beats.push({ at: clock.now(), leaseMs });
      return memory.heartbeat(key, token, leaseMs);
    };
    const gate = new Gate();
    const handler = idempotentHttpApiHandler(
      async () => {
        await gate.opened;
        return { statusCode: 201, body: 'done' };
      },
      { store, lease: '3s', clock },
    );
    const start = clock.now();
    const first = handler(withV2Key(v2Post(), 'deadline'), lambdaContext(5_000));
    for (let i = 0; i < 12; i++) await clock.advance(500);
    // Beats every second, each lease cut at the invocation's end (5 s after it began).
    expect(beats.length).toBeGreaterThanOrEqual(3);
    for (const beat of beats) expect(beat.at + beat.leaseMs).toBeLessThanOrEqual(start + 5_000);
    expect(beats.some((beat) => beat.leaseMs < 3_000)).toBe(true);
    const record = (await memory.list({})).records[0];
    expect(record?.leaseUntil).toBeLessThanOrEqual(start + 5_000);
    gate.open();
    await first;
  });

  it('releases the key on a 5xx and on a thrown error, so a retry runs again', async () => {
    let runs = 0;
    const handler = idempotentApiGatewayHandler(
      async () => {
        runs++;
        if (runs === 1) throw new Error('timeout talking to the ledger');
        if (runs === 2) return { statusCode: 502, body: 'bad gateway' };
        return { statusCode: 201, body: 'ok' };
      },
      { store: createMemoryStore() },
    );
    await expect(handler(withV2Key(v2Post(), 'r'), lambdaContext())).rejects.toThrow(
      'timeout talking to the ledger',
    );
    expect(await handler(withV2Key(v2Post(), 'r'), lambdaContext())).toEqual({
      statusCode: 502,
      body: 'bad gateway',
    });
    expect(await handler(withV2Key(v2Post(), 'r'), lambdaContext())).toEqual({
      statusCode: 201,
      body: 'ok',
    });
    const replay = (await handler(
      withV2Key(v2Post(), 'r'),
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    expect(replay.headers?.['idempotent-replayed']).toBe('true');
    expect(runs).toBe(3);
  });

  it('runs once and replays headers past Latin-1 as the same text; a header no HTTP field can carry is not stored', async () => {
    let charges = 0;
    const disposition = 'attachment; filename="Zoë 北京.pdf"';
    const handler = idempotentHttpApiHandler(
      async () => {
        charges++;
        return {
          statusCode: 201,
          headers: {
            'content-type': 'application/json',
            'content-disposition': disposition,
            'content-language': 'fr',
            location: 'line\r\nbreak',
          },
          cookies: ['name=Zoë'],
          body: '{"charged":true}',
        };
      },
      {
        store: createMemoryStore(),
        replayHeaders: ['content-disposition', 'content-type', 'location', 'content-language'],
      },
    );
    const first = (await handler(
      withV2Key(v2Post(), 'utf8-headers'),
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    // The handler's own result, untouched.
    expect(first.headers?.['content-disposition']).toBe(disposition);
    expect(first.headers?.location).toBe('line\r\nbreak');
    const replay = (await handler(
      withV2Key(v2Post(), 'utf8-headers'),
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    expect(charges).toBe(1);
    expect(replay.statusCode).toBe(201);
    expect(replay.headers?.['idempotent-replayed']).toBe('true');
    expect(replay.headers?.['content-disposition']).toBe(disposition);
    expect(replay.headers?.['content-language']).toBe('fr');
    expect(replay.headers).not.toHaveProperty('location');
    expect(replay.cookies).toBeUndefined();
  });

  it('keeps Latin-1 header text as it was given on replay (v1)', async () => {
    let runs = 0;
    const handler = idempotentRestApiHandler(
      async () => {
        runs++;
        return {
          statusCode: 200,
          headers: {
            'content-type': 'text/plain',
            'content-disposition': 'inline; filename="café"',
            // Latin-1 text that reads as UTF-8 bytes too: replayed as given, not as "é".
            'content-location': '/files/Ã©t.txt',
          },
          multiValueHeaders: { 'content-language': ['de', 'Zoë'] },
          body: 'ok',
        };
      },
      {
        store: createMemoryStore(),
        replayHeaders: [
          'content-disposition',
          'content-type',
          'content-language',
          'content-location',
        ],
      },
    );
    await handler(withV1Key(v1Post(), 'latin1'), lambdaContext());
    const replay = (await handler(
      withV1Key(v1Post(), 'latin1'),
      lambdaContext(),
    )) as APIGatewayProxyResult;
    expect(runs).toBe(1);
    expect(replay.headers?.['content-disposition']).toBe('inline; filename="café"');
    expect(replay.headers?.['content-language']).toBe('de, Zoë');
    expect(replay.headers?.['content-location']).toBe('/files/Ã©t.txt');
  });

  it('returns binary results base64 on replay, byte for byte', async () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]);
    const handler = idempotentHttpApiHandler(
      async () => ({
        statusCode: 200,
        headers: { 'content-type': 'image/png' },
        body: png.toString('base64'),
        isBase64Encoded: true,
      }),
      { store: createMemoryStore() },
    );
    await handler(withV2Key(v2Post(), 'img'), lambdaContext());
    const replay = (await handler(
      withV2Key(v2Post(), 'img'),
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    expect(replay.isBase64Encoded).toBe(true);
    expect(Buffer.from(replay.body ?? '', 'base64')).toEqual(png);
  });

  it('replays gzip under a JSON type byte for byte, and text under any type as text', async () => {
    const zipped = gzipSync(Buffer.from('{"order":"o-1","note":"caf\u00e9"}'));
    const results: Record<string, APIGatewayProxyStructuredResultV2> = {
      gzip: {
        statusCode: 200,
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: zipped.toString('base64'),
        isBase64Encoded: true,
      },
      yaml: { statusCode: 200, headers: { 'content-type': 'application/yaml' }, body: 'a: 1\n' },
      untyped: { statusCode: 201, body: '{"created":true}' },
    };
    const handler = idempotentHttpApiHandler(
      async (event: APIGatewayProxyEventV2WithJWTAuthorizer) =>
        results[event.headers['idempotency-key'] as string] as APIGatewayProxyStructuredResultV2,
      { store: createMemoryStore() },
    );
    const replay = async (key: string) => {
      await handler(withV2Key(v2Post(), key), lambdaContext());
      return (await handler(
        withV2Key(v2Post(), key),
        lambdaContext(),
      )) as APIGatewayProxyStructuredResultV2;
    };
    const gzip = await replay('gzip');
    expect(gzip.isBase64Encoded).toBe(true);
    expect(gunzipSync(Buffer.from(gzip.body ?? '', 'base64')).toString()).toBe(
      '{"order":"o-1","note":"caf\u00e9"}',
    );
    expect(gzip.headers?.['content-encoding']).toBe('gzip');
    const yaml = await replay('yaml');
    expect(yaml).toMatchObject({ body: 'a: 1\n', isBase64Encoded: false });
    // No content-type of the replay's own: the first answer had none.
    const untyped = await replay('untyped');
    expect(untyped).toMatchObject({ statusCode: 201, body: '{"created":true}' });
    expect(untyped.headers?.['content-type']).toBeUndefined();
  });

  it('answers a result too large to store with a 410 problem on a repeat', async () => {
    let runs = 0;
    const handler = idempotentHttpApiHandler(
      async () => {
        runs++;
        return { statusCode: 200, body: 'z'.repeat(2_000) };
      },
      { store: createMemoryStore(), maxStoredBodyBytes: 1_000 },
    );
    expect(await handler(withV2Key(v2Post(), 'big'), lambdaContext())).toEqual({
      statusCode: 200,
      body: 'z'.repeat(2_000),
    });
    const again = (await handler(
      withV2Key(v2Post(), 'big'),
      lambdaContext(),
    )) as APIGatewayProxyStructuredResultV2;
    expect(again.statusCode).toBe(410);
    expect(JSON.parse(again.body ?? '')).toMatchObject({
      code: 'RESULT_TOO_LARGE',
      originalStatus: 200,
    });
    expect(runs).toBe(1);
  });

  it('answers 503 with Retry-After when the store is down, without running the handler', async () => {
    let runs = 0;
    const handler = idempotentApiGatewayHandler(
      async () => {
        runs++;
        return { statusCode: 201, body: 'x' };
      },
      { store: unreachableStore() },
    );
    const result = (await handler(v2Post(), lambdaContext())) as APIGatewayProxyStructuredResultV2;
    expect(result.statusCode).toBe(503);
    expect(result.headers?.['retry-after']).toBe('1');
    expect(runs).toBe(0);
  });
});
