import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { idempotencyKey } from '../../src/http/idempotency-key.js';
import { createMemoryStore } from '../../src/idempotency/index.js';

const principals = ['alice', 'bob', 'carol', undefined] as const;
const keys = ['k1', 'k2', 'k3'] as const;
const bodies = ['{"item":"book"}', '{"item":"lamp"}'] as const;

const call = fc.record({
  principal: fc.constantFrom(...principals),
  key: fc.constantFrom(...keys),
  body: fc.constantFrom(...bodies),
});

describe('scoping by principal (property)', () => {
  it("never replays one principal's response to another; every repeat gets its own first answer", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(call, { minLength: 1, maxLength: 40, size: 'max' }),
        async (calls) => {
          const guard = idempotencyKey({
            store: createMemoryStore(),
            scope: (req) => req.headers.get('x-principal') ?? undefined,
          });
          let runs = 0;
          const handler = async (req: Request) => {
            runs++;
            const who = req.headers.get('x-principal') ?? 'anonymous';
            return new Response(JSON.stringify({ for: who, run: runs, body: await req.text() }), {
              status: 201,
              headers: { 'content-type': 'application/json' },
            });
          };
          // The model: the first answer of each (principal, key), and the body it was for.
          const first = new Map<string, { body: string; text: string }>();
          for (const c of calls) {
            const headers: Record<string, string> = { 'idempotency-key': c.key };
            if (c.principal !== undefined) headers['x-principal'] = c.principal;
            const response = await guard(
              new Request('https://api.example/orders', { method: 'POST', headers, body: c.body }),
              handler,
            );
            const text = await response.text();
            const id = `${c.principal ?? ''}|${c.key}`;
            const known = first.get(id);
            if (known === undefined) {
              expect(response.status).toBe(201);
              expect(response.headers.get('idempotent-replayed')).toBeNull();
              expect(JSON.parse(text).for).toBe(c.principal ?? 'anonymous');
              first.set(id, { body: c.body, text });
            } else if (known.body === c.body) {
              expect(response.headers.get('idempotent-replayed')).toBe('true');
              expect(text).toBe(known.text);
              expect(JSON.parse(text).for).toBe(c.principal ?? 'anonymous');
            } else {
              expect(response.status).toBe(422);
            }
          }
          expect(runs).toBe(first.size);
        },
      ),
      { numRuns: 100 },
    );
  });
});
