import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Fifo } from '../../src/consumer/fifo.js';

describe('Fifo', () => {
  it('behaves as an array used with push and shift', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), value: fc.integer() }),
      fc.record({ kind: fc.constant('shift' as const), times: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({
        kind: fc.constant('pushMany' as const),
        count: fc.integer({ min: 1, max: 3000 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60, size: 'max' }), (ops) => {
        const fifo = new Fifo<number>();
        const model: number[] = [];
        let next = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            fifo.push(o.value);
            model.push(o.value);
          } else if (o.kind === 'pushMany') {
            for (let i = 0; i < o.count; i++) {
              fifo.push(next);
              model.push(next);
              next += 1;
            }
          } else {
            const got: Array<number | undefined> = [];
            const want: Array<number | undefined> = [];
            for (let i = 0; i < o.times; i++) {
              got.push(fifo.shift());
              want.push(model.shift());
            }
            expect(got).toEqual(want);
          }
          expect(fifo.length).toBe(model.length);
        }
      }),
      { numRuns: 100 },
    );
  });
});
