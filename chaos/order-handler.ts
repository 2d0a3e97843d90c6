import type { ConsumerMessage, MessageHandler } from '../src/consumer/message-processor.js';
import { LeaseLostError, NonRetryableError } from '../src/errors.js';
import type { IdempotencyContext } from '../src/idempotency/types.js';
import type { Random } from '../src/random.js';
import type { EffectWriter } from './effects-db.js';
import { FaultCode, InjectedFault } from './injected-fault.js';
import type { OrderBody } from './plan.js';
import type { WorkerCounts } from './protocol.js';
import type { GuardedStore } from './store-access.js';

/** What the order handler of one worker process needs. */
export interface OrderHandlerDeps {
  phase: string;
  worker: string;
  random: Random;
  rates: { handlerError: number; timeoutAfterEffect: number };
  stallMs: number;
  /** True once the run drains: no more injected faults, the sticky dependency is back. */
  isCalm(): boolean;
  count(name: keyof WorkerCounts): void;
  effects: EffectWriter;
  /** The instrumented idempotency store; undefined for the baseline (plain inserts, no fence). */
  guard: GuardedStore | undefined;
  /** Told +1 when a handler starts stalling and -1 when it resumes. */
  onStall?: (delta: number) => void;
}

/**
 * Longest a stalled handler waits for the takeover of its operation. On RabbitMQ the copy
 * that takes over waits out its in-progress bounce behind the whole queue, minutes in a
 * full run; the stall also ends when the run calms down.
 */
const MAX_STALL_MS = 10 * 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The two steps of an order; each writes one row to `effects`. */
export const STEPS = ['reserve', 'ship'] as const;

/**
 * The handler every worker runs: two steps whose effects are rows in PostgreSQL, with the
 * faults of the run injected around them.
 *
 *   poison ─► NonRetryableError (quarantined at once, no effect)
 *   handler exception (rate) ─► retried
 *   step 'reserve' ── [stall past the lease, heartbeats held: a zombie] ── write ── [timeout after the write (rate)]
 *   sticky and not healed ─► DEPENDENCY_DOWN (retried until quarantined; redriven once healed)
 *   step 'ship' ── write ── [timeout after the write (rate)]
 *
 * With idempotency each write is fenced at the resource (see effects-db.ts): a re-execution
 * finds its row and writes nothing ('absorbed'); a zombie's stale token writes nothing
 * ('fenced') and the handler fails with LeaseLostError, which the consumer retries: the
 * redelivery then replays the newer holder's result. The baseline writes plain rows.
 */
export function createOrderHandler(deps: OrderHandlerDeps): MessageHandler<OrderBody> {
  const { effects, guard, count } = deps;

  async function write(
    message: ConsumerMessage<OrderBody>,
    ctx: IdempotencyContext,
    step: string,
  ): Promise<void> {
    const row = {
      phase: deps.phase,
      messageId: message.body.id,
      step,
      worker: deps.worker,
      guardedSince: guard?.guardedSince(ctx.key),
    };
    if (guard === undefined) {
      await effects.plain(row);
    } else {
      const outcome = await effects.fenced(
        { operation: ctx.key, token: ctx.token, effectKey: ctx.keyFor(step) },
        row,
      );
      count(outcome);
      if (outcome === 'fenced') {
        throw new LeaseLostError(
          `the effects database refused step "${step}" of ${message.body.id}: token ${ctx.token} is stale, a newer holder has written`,
        );
      }
    }
    if (timesOutAfterWrite()) {
      count('timeoutsAfterEffect');
      throw new InjectedFault(
        FaultCode.DEPENDENCY_TIMEOUT,
        `the write of step "${step}" was applied, then the call timed out`,
      );
    }
  }

  function timesOutAfterWrite(): boolean {
    return !deps.isCalm() && deps.random() < deps.rates.timeoutAfterEffect;
  }

  /**
   * A slow dependency call that outlives the lease: at least `stallMs`, and with idempotency
   * until another worker has taken the operation over and saved its first step (at most
   * {@link MAX_STALL_MS}, or until the run calms down), so that the stalled handler's next
   * write meets the newer token at the fence. Its heartbeats are held meanwhile (see
   * GuardedStore.holdHeartbeats).
   */
  async function stallPastLease(ctx: IdempotencyContext): Promise<void> {
    const giveUpAt = Date.now() + MAX_STALL_MS;
    await sleep(deps.stallMs);
    if (guard === undefined) return;
    while (Date.now() < giveUpAt && !deps.isCalm()) {
      try {
        const record = await guard.store.get(ctx.key);
        if (
          record !== undefined &&
          record.token > ctx.token &&
          (record.status !== 'in_progress' || record.steps.reserve !== undefined)
        ) {
          return;
        }
      } catch {
        // The store is away (an outage, a killed connection): keep stalling.
      }
      await sleep(200);
    }
  }

  return async function handleOrder(message, ctx) {
    const order = message.body;
    count('runs');
    if (order.kind === 'poison') {
      throw new NonRetryableError(`order ${order.id} can never be processed`, {
        code: FaultCode.POISON_ORDER,
      });
    }
    // Only the first run of the operation stalls (a takeover runs on), and nothing else is
    // injected into it: the zombie is the fault this message is for. The baseline has no
    // operations, so there only the first delivery of each copy stalls.
    const stalls =
      order.stall &&
      !deps.isCalm() &&
      ctx.attempt === 1 &&
      (guard !== undefined || message.attempt === 1);
    if (!stalls && !deps.isCalm() && deps.random() < deps.rates.handlerError) {
      count('handlerErrors');
      throw new InjectedFault(FaultCode.HANDLER_FAULT, `injected handler exception on ${order.id}`);
    }
    await ctx.step('reserve', async () => {
      if (stalls) {
        count('stalls');
        deps.onStall?.(1);
        const stalled = stallPastLease(ctx);
        guard?.holdHeartbeats(ctx.key, stalled);
        // The lease keeper may abort ctx.signal meanwhile; this handler does not look, as a
        // write already on its way when a process froze cannot: the fence must stop it.
        try {
          await stalled;
        } finally {
          deps.onStall?.(-1);
        }
      }
      await write(message, ctx, 'reserve');
      return { reserved: order.amount };
    });
    if (order.kind === 'sticky' && !deps.isCalm()) {
      count('dependencyDown');
      throw new InjectedFault(
        FaultCode.DEPENDENCY_DOWN,
        `the shipping service is down for ${order.id}`,
      );
    }
    await ctx.step('ship', async () => {
      await write(message, ctx, 'ship');
      return { shipped: true };
    });
    return { id: order.id, token: ctx.token };
  };
}
