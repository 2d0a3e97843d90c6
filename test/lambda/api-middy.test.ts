import middy, { type MiddlewareObj } from '@middy/core';
import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2WithJWTAuthorizer,
  APIGatewayProxyResult,
} from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../src/idempotency/index.js';
import { idempotencyContext, idempotencyKeyMiddy } from '../../src/lambda/api/index.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { Gate, tempSqliteStore } from '../http/support/app.js';
import { fixture, lambdaContext } from './support.js';

function v1(key: string, body = '{"item":"book"}'): APIGatewayProxyEvent {
  const event = fixture<APIGatewayProxyEvent>('rest-api-v1-post.json');
  event.headers['Idempotency-Key'] = key;
  event.multiValueHeaders['Idempotency-Key'] = [key];
  event.body = body;
  return event;
}

function v2(key: string): APIGatewayProxyEventV2WithJWTAuthorizer {
  const event = fixture<APIGatewayProxyEventV2WithJWTAuthorizer>('http-api-v2-post.json');
  event.headers['idempotency-key'] = key;
  return event;
}

describe('idempotencyKeyMiddy (@middy/core 6)', () => {
  it('runs the handler once; a repeat is answered in `before` and the handler does not run', async () => {
    const sqlite = tempSqliteStore();
    let runs = 0;
    const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
      .use(
        idempotencyKeyMiddy<APIGatewayProxyEvent>({
          store: sqlite.store,
          scope: (event) => event.requestContext.authorizer?.principalId as string | undefined,
        }),
      )
      .handler(async (event) => {
        runs++;
        const charge = await idempotencyContext(event)?.step('charge', () => `ch_${runs}`);
        return {
          statusCode: 201,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ charge }),
        };
      });
    try {
      const first = await handler(v1('m-1'), lambdaContext(10_000));
      expect(first).toEqual({
        statusCode: 201,
        headers: { 'content-type': 'application/json' },
        body: '{"charge":"ch_1"}',
      });
      const again = await handler(v1('m-1'), lambdaContext(10_000));
      expect(again).toEqual({
        statusCode: 201,
        headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
        body: '{"charge":"ch_1"}',
        isBase64Encoded: false,
      });
      const reuse = await handler(v1('m-1', '{"item":"lamp"}'), lambdaContext(10_000));
      expect(reuse.statusCode).toBe(422);
      const missing = v1('x');
      delete missing.headers['Idempotency-Key'];
      delete missing.multiValueHeaders['Idempotency-Key'];
      expect((await handler(missing, lambdaContext(10_000))).statusCode).toBe(400);
      expect(runs).toBe(1);
    } finally {
      await sqlite.cleanup();
    }
  });

  it('releases the key when the handler throws; an outer error middleware still turns it into a 500', async () => {
    let runs = 0;
    const handler = middy<APIGatewayProxyEventV2WithJWTAuthorizer>()
      .use({
        onError: async (request) => {
          request.response = { statusCode: 500, body: 'sorry' };
        },
      })
      .use(idempotencyKeyMiddy({ store: createMemoryStore() }))
      .handler(async () => {
        runs++;
        if (runs === 1) throw new Error('ledger timeout');
        return { statusCode: 201, body: 'ok' };
      });
    expect(await handler(v2('m-2'), lambdaContext(10_000))).toEqual({
      statusCode: 500,
      body: 'sorry',
    });
    expect(await handler(v2('m-2'), lambdaContext(10_000))).toEqual({
      statusCode: 201,
      body: 'ok',
    });
    expect(await handler(v2('m-2'), lambdaContext(10_000))).toMatchObject({
      statusCode: 201,
      body: 'ok',
      headers: { 'idempotent-replayed': 'true' },
    });
    expect(runs).toBe(2);
  });

  it('answers 409 with Retry-After while another invocation holds the key', async () => {
    const gate = new Gate();
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const handler = middy<APIGatewayProxyEventV2WithJWTAuthorizer>()
      .use(idempotencyKeyMiddy({ store: createMemoryStore() }))
      .handler(async () => {
        started();
        await gate.opened;
        return { statusCode: 201, body: 'made' };
      });
    const first = handler(v2('m-3'), lambdaContext(6_000));
    await running;
    const busy = await handler(v2('m-3'), lambdaContext(10_000));
    // The default hint: a second, however long the lease (6s here) has left.
    expect(busy).toMatchObject({ statusCode: 409, headers: { 'retry-after': '1' } });
    gate.open();
    expect(await first).toEqual({ statusCode: 201, body: 'made' });
  });

  it("frees the key when the invocation's time is up if an inner middleware answered early", async () => {
    const clock = new FakeClock();
    const store = createMemoryStore();
    let runs = 0;
    let shortCircuit = true;
    const handler = middy<APIGatewayProxyEventV2WithJWTAuthorizer>()
      .use(idempotencyKeyMiddy({ store, clock }))
      // Used after ours: its early answer skips the handler and every `after`.
      .use({ before: async () => (shortCircuit ? { statusCode: 204 } : undefined) })
      .handler(async () => {
        runs++;
        return { statusCode: 201, body: 'ran' };
      });
    expect(await handler(v2('m-4'), lambdaContext(3_000))).toEqual({ statusCode: 204 });
    shortCircuit = false;
    expect(await handler(v2('m-4'), lambdaContext(10_000))).toMatchObject({ statusCode: 409 });
    await clock.advance(3_000);
    expect(await handler(v2('m-4'), lambdaContext(10_000))).toEqual({
      statusCode: 201,
      body: 'ran',
    });
    expect(runs).toBe(1);
  });
});

describe('idempotencyKeyMiddy after a JSON body parser', () => {
  // What @middy/http-json-body-parser does in `before`: event.body becomes the parsed object.
  const jsonBodyParser: MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> = {
    before: async (request) => {
      const event = request.event as { body: unknown };
      if (typeof event.body === 'string') event.body = JSON.parse(event.body);
    },
  };

  it('fingerprints the parsed body as canonical JSON; one nested too deep is a 400, not a crash', async () => {
    let runs = 0;
    const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
      .use(jsonBodyParser)
      .use(idempotencyKeyMiddy<APIGatewayProxyEvent>({ store: createMemoryStore() }))
      .handler(async () => {
        runs++;
        return { statusCode: 201, body: '{}' };
      });
    expect(await handler(v1('p1', '{"a":1,"b":2}'), lambdaContext(10_000))).toMatchObject({
      statusCode: 201,
    });
    // The same data, keys in another order: the same request, replayed.
    const again = await handler(v1('p1', '{"b":2,"a":1}'), lambdaContext(10_000));
    expect(again).toMatchObject({ statusCode: 201 });
    expect(runs).toBe(1);
    const other = await handler(v1('p1', '{"a":1,"b":3}'), lambdaContext(10_000));
    expect(other).toMatchObject({ statusCode: 422 });
    const deep = `${'['.repeat(1500)}${']'.repeat(1500)}`;
    const refused = await handler(v1('p2', deep), lambdaContext(10_000));
    expect(refused).toMatchObject({ statusCode: 400 });
    expect(JSON.parse((refused as { body: string }).body)).toMatchObject({
      code: 'REQUEST_NESTED_TOO_DEEP',
    });
    expect(runs).toBe(1);
  });
});
