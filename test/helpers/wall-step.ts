import { executeIdempotent } from '../../src/idempotency/execute.js';
import type { IdempotencyStore } from '../../src/idempotency/store.js';
import type { IdempotencyContext } from '../../src/idempotency/types.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

/** A wall clock that can be stepped (NTP) while elapsed time, and the timers, go on evenly. */
export class SteppedClock extends FakeClock {
  step = 0;
  override now(): number {
    return super.now() + this.step;
  }
  elapsed(): number {
    return super.now();
  }
}

/**
 * Worker A holds an operation (30 s lease, no heartbeats) and waits 5 s between its steps
 * `charge` and `email`; meanwhile the wall clock steps a minute forward and worker B runs the
 * same operation. Returns how A ended and who sent the email. `settled` waits until A is in
 * its wait (a store on a real server answers later than a fake clock moves).
 */
export async function acrossWallStep(
  store: IdempotencyStore,
  clock: SteppedClock,
  settled: () => Promise<void>,
): Promise<{ outcomeOfA: unknown; sent: string[] }> {
  const options = { store, clock, lease: '30s', heartbeat: false as const };
  const sent: string[] = [];
  const send = (by: string) => async (ctx: IdempotencyContext) => {
    await ctx.step('charge', () => 'charged');
    if (by === 'A') await new Promise<void>((done) => clock.setTimer(5_000, done));
    await ctx.step('email', () => {
      sent.push(by);
      return by;
    });
    return by;
  };
  const identity = { operation: 'wall-step', key: `k-${Math.random().toString(36).slice(2)}` };
  const a = executeIdempotent(identity, send('A'), options).catch((e: unknown) => e);
  await settled();
  clock.step = 60_000;
  await executeIdempotent(identity, send('B'), options);
  await clock.advance(5_000);
  return { outcomeOfA: await a, sent };
}
