import { describe, expect, it } from 'vitest';
import { MAX_CAUSE_DEPTH, causeChain } from '../src/cause-chain.js';

describe('causeChain', () => {
  it('gives the error and each cause, down to the first value that is not an object', () => {
    const root = new Error('root');
    const mid = new Error('mid', { cause: root });
    const top = new Error('top', { cause: mid });
    expect(causeChain(top)).toEqual([top, mid, root]);
    expect(causeChain(new Error('x', { cause: 'a string' }))).toHaveLength(1);
    expect(causeChain('thrown text')).toEqual([]);
    expect(causeChain(null)).toEqual([]);
  });

  it('ends at a cycle, at a cause getter that throws, and after MAX_CAUSE_DEPTH links', () => {
    const a: { cause?: unknown } = {};
    const b = { cause: a };
    a.cause = b;
    expect(causeChain(a)).toEqual([a, b]);

    const odd = new Error('odd');
    Object.defineProperty(odd, 'cause', {
      get() {
        throw new TypeError('cause getter exploded');
      },
    });
    expect(causeChain(new Error('top', { cause: odd }))).toHaveLength(2);

    let deep: unknown = new Error('bottom');
    for (let i = 0; i < 20; i++) deep = new Error(`level ${i}`, { cause: deep });
    expect(causeChain(deep)).toHaveLength(MAX_CAUSE_DEPTH);
  });
});
