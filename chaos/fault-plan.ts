import type { Random } from '../src/random.js';

/** Faults the runner injects from outside the workers. */
export type TriggerKind = 'kill' | 'brokerCut' | 'storeKill' | 'outage';

/** One fault, due once the phase's progress (settled / total messages) reaches `at`. */
export interface Trigger {
  kind: TriggerKind;
  at: number;
}

/** How many of each fault one phase gets. */
export interface PhaseFaults {
  kills: number;
  brokerCuts: number;
  storeKills: number;
  outage: boolean;
}

/** Where in a phase's progress faults may land: after it started, before it ends. */
const FIRST = 0.05;
const LAST = 0.85;

/**
 * Places a phase's faults on its progress, not on the clock: the run does not know how
 * fast this machine is, and a fault planned for second 40 of a phase that ends at second 30
 * never happens. Progress-triggered faults all land while messages are still flowing. Each
 * kind is spread evenly over [5%, 85%] with seeded jitter; the outage lands mid-phase.
 */
export function planTriggers(faults: PhaseFaults, random: Random): Trigger[] {
  const triggers: Trigger[] = [];
  const spread = (kind: TriggerKind, n: number) => {
    for (let i = 0; i < n; i++) {
      const slot = (i + 0.2 + 0.6 * random()) / n;
      triggers.push({ kind, at: FIRST + (LAST - FIRST) * slot });
    }
  };
  spread('kill', faults.kills);
  spread('brokerCut', faults.brokerCuts);
  spread('storeKill', faults.storeKills);
  if (faults.outage) triggers.push({ kind: 'outage', at: 0.35 + 0.2 * random() });
  return triggers.sort((a, b) => a.at - b.at);
}

/** Splits `total` over `parts` as evenly as possible, the larger shares first. */
export function share(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total % parts ? 1 : 0));
}
