import type { Random } from '../src/random.js';
import type { BrokerKind, FaultRates } from './options.js';

/** What an order message carries. */
export interface OrderBody {
  /** The message id, also its idempotency key. */
  id: string;
  /** `poison`: can never succeed; `sticky`: its dependency is down until the run heals it. */
  kind: 'normal' | 'poison' | 'sticky';
  /** Its first run stalls past its lease (a zombie). */
  stall: boolean;
  amount: number;
}

/** One publication: a message, or a duplicate of one. */
export interface Publication {
  body: OrderBody;
  /** 1 for the original, 2 for the duplicate. */
  copy: number;
}

/** The messages of one broker phase and the order they are published in. */
export interface PhasePlan {
  phase: BrokerKind;
  messages: OrderBody[];
  publications: Publication[];
  duplicates: number;
}

/**
 * Draws the messages of a phase from the run's seeded randomness: which are poison, sticky or
 * stalled, and which are published twice. A stalled message is always published twice, its
 * copy right behind it, so another worker holds a delivery of the same operation while the
 * first one stalls (RabbitMQ has no ack deadline that would redeliver it). Other duplicates
 * land a little later in the stream. At least one normal message is duplicated, so the
 * baseline always has something to show.
 */
export function planPhase(
  phase: BrokerKind,
  count: number,
  stalls: number,
  rates: Pick<FaultRates, 'duplicate' | 'poison' | 'sticky'>,
  random: Random,
): PhasePlan {
  const prefix = phase === 'amqp' ? 'a' : 'n';
  const width = Math.max(5, String(count).length);
  const messages: OrderBody[] = [];
  for (let i = 0; i < count; i++) {
    const roll = random();
    const kind =
      roll < rates.poison ? 'poison' : roll < rates.poison + rates.sticky ? 'sticky' : 'normal';
    messages.push({
      id: `${prefix}-${String(i).padStart(width, '0')}`,
      kind,
      stall: false,
      amount: 1 + Math.floor(random() * 500),
    });
  }
  // Stalls go to normal messages spread over the first 60% of the phase, so that their
  // takeover (behind the rest of the queue) still happens while messages flow.
  const normal = messages.filter((m) => m.kind === 'normal');
  for (let s = 0; s < Math.min(stalls, normal.length); s++) {
    const start = Math.floor((0.1 + (0.5 * (s + 0.5)) / stalls) * normal.length);
    // Two marks may round to one order: take the next one not yet stalled.
    for (let k = 0; k < normal.length; k++) {
      const chosen = normal[(start + k) % normal.length];
      if (chosen && !chosen.stall) {
        chosen.stall = true;
        break;
      }
    }
  }

  const twice = messages.map((body) => body.stall || random() < rates.duplicate);
  if (!twice.some((t, i) => t && messages[i]?.kind === 'normal')) {
    const first = messages.findIndex((m) => m.kind === 'normal');
    if (first >= 0) twice[first] = true;
  }
  const slots: Publication[][] = messages.map((body) => [{ body, copy: 1 }]);
  let duplicates = 0;
  messages.forEach((body, i) => {
    if (!twice[i]) return;
    duplicates += 1;
    if (body.stall) {
      // Right behind its original, before any other order's duplicate landing here.
      slots[i]?.splice(1, 0, { body, copy: 2 });
      return;
    }
    const later = Math.min(messages.length - 1, i + Math.floor(random() * 200));
    slots[later]?.push({ body, copy: 2 });
  });
  const publications = slots.flat();
  return { phase, messages, publications, duplicates };
}
