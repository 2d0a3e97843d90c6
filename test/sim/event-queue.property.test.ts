import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventQueue } from '../../src/sim/event-queue.js';

describe('EventQueue', () => {
  it('pops in time order, ties in insertion order, whatever the interleaving', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 50 }), fc.constant(-1)), {
          maxLength: 400,
          size: 'max',
        }),
        (ops) => {
          const q = new EventQueue(2);
          const model: Array<{ t: number; id: number }> = [];
          let id = 0;
          for (const op of ops) {
            if (op >= 0) {
              q.push(op, id);
              model.push({ t: op, id });
              id++;
            } else if (model.length > 0) {
              model.sort((a, b) => a.t - b.t || a.id - b.id);
              const want = model.shift();
              expect(q.peekTime()).toBe(want?.t);
              expect(q.pop()).toBe(want?.id);
            }
          }
          expect(q.length).toBe(model.length);
        },
      ),
    );
  });
});
