import type { DeadLetterQueue, QuarantinedMessage } from '../src/consumer/types.js';
import type { BrokerKind } from './options.js';
import type { Publication } from './plan.js';
import type { WorkerBrokerConfig } from './protocol.js';

/** What a phase needs of its broker, on the runner's side (its own direct connection). */
export interface PhaseBroker {
  readonly kind: BrokerKind;
  /** Queue or stream name: the `source` in quarantine histories. */
  readonly source: string;
  /** The port the broker relay forwards to. */
  readonly port: number;
  /** Creates the queues or streams of the run. */
  declare(): Promise<void>;
  /** Publishes every publication, each confirmed by the broker. */
  publish(publications: readonly Publication[]): Promise<void>;
  /** How worker `name` reaches the broker through the relay on `relayPort`. */
  workerConfig(relayPort: number, name: string): WorkerBrokerConfig;
  /**
   * Has the broker itself close the workers' connections (as an operator or a node shutdown
   * does); returns how many it closed. Undefined when this broker offers no way to do it here.
   */
  readonly closeFromServer: (() => Promise<number>) | undefined;
  readonly deadLetters: DeadLetterQueue;
  /** Messages in the dead-letter destination now. */
  deadLetterCount(): Promise<number>;
  /** Every quarantined message, read without taking it away. */
  listDeadLetters(): Promise<QuarantinedMessage[]>;
  /** Deletes the run's queues or streams (unless kept) and closes the connection. */
  close(options: { keep: boolean }): Promise<void>;
}

/** The wire form of an order publication, the same on both brokers. */
export function encodeOrder(publication: Publication): {
  id: string;
  body: Buffer;
  headers: Record<string, string>;
} {
  return {
    id: `${publication.body.id}.${publication.copy}`,
    body: Buffer.from(JSON.stringify(publication.body)),
    headers: { 'idempotency-key': publication.body.id },
  };
}

/** The order id of a delivery: its id is the publication id `<order id>.<copy>`. */
export function orderIdOfDelivery(deliveryId: string): string {
  return deliveryId.replace(/\.\d+$/, '');
}

/** The order id in a quarantined message's body, or undefined when it is not an order. */
export function orderIdOfBody(body: Uint8Array): string | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(body).toString('utf8')) as { id?: unknown };
    return typeof parsed.id === 'string' ? parsed.id : undefined;
  } catch {
    return undefined;
  }
}
