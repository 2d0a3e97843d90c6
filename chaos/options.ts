import { toMs } from '../src/duration.js';
import { InvalidArgumentError } from '../src/errors.js';

/** The brokers a run goes through, in order. */
export type BrokerKind = 'amqp' | 'nats';

/** The idempotency store the workers and the HTTP server share. */
export type StoreKind = 'redis' | 'postgres';

/** How RabbitMQ connections are closed from the server side. */
export type AmqpCloseMode = 'rabbitmqctl' | 'relay';

/** Rates of the faults decided per message or per attempt (each in [0, 1]). */
export interface FaultRates {
  /** Share of messages published twice. */
  duplicate: number;
  /** Share of handler attempts that throw before doing anything. */
  handlerError: number;
  /** Share of step executions whose dependency times out after it applied the write. */
  timeoutAfterEffect: number;
  /** Share of messages that can never succeed (quarantined at once, never redriven). */
  poison: number;
  /** Share of messages whose dependency is down until the end of the run (quarantined, then redriven). */
  sticky: number;
  /** Share of HTTP attempts whose response is lost after the server answered. */
  lostResponse: number;
  /** Share of HTTP operations a client submits twice at the same time (a double click). */
  doubleSubmit: number;
}

/** Everything a chaos run needs; {@link parseChaosArgs} builds it from the command line. */
export interface ChaosOptions {
  store: StoreKind;
  /** False: the baseline (plain handler, plain inserts), to show what the faults do unprotected. */
  idempotency: boolean;
  /** Messages per broker phase (unique; duplicate publications come on top). */
  messages: number;
  /** HTTP operations in the whole run. */
  httpOps: number;
  /** Worker processes per broker phase. */
  workers: number;
  /** SIGKILLs of workers in the whole run, spread over the phases. */
  kills: number;
  /** Bound on the whole run; what is not done by then counts as lost. */
  durationMs: number;
  seed: number;
  phases: readonly BrokerKind[];
  /** Handlers running at once in each worker. */
  concurrency: number;
  /** Idempotency lease (heartbeats every lease/3). */
  leaseMs: number;
  /** Messages per phase whose first run stalls past its lease (a zombie the fence must stop). */
  stalls: number;
  /** How long a stalled handler sleeps (must exceed the lease). */
  stallMs: number;
  /** Length of the idempotency store outage in each phase (0: none). */
  outageMs: number;
  /** Broker connection closes per phase. */
  brokerCuts: number;
  /** Kills of the idempotency store's connections per phase. */
  storeKills: number;
  amqpClose: AmqpCloseMode;
  rates: FaultRates;
  urls: { postgres: string; redis: string; amqp: string; nats: string };
  json: boolean;
  quiet: boolean;
  /** Leave the run's schemas, keys, queues and streams in place for inspection. */
  keep: boolean;
}

/** The full configuration: what `npm run chaos` runs without flags. */
export const DEFAULT_OPTIONS: ChaosOptions = {
  store: 'redis',
  idempotency: true,
  messages: 10_000,
  httpOps: 2_000,
  workers: 4,
  kills: 20,
  durationMs: 15 * 60_000,
  seed: 0,
  phases: ['amqp', 'nats'],
  concurrency: 16,
  leaseMs: 2_000,
  stalls: 4,
  stallMs: 6_000,
  outageMs: 3_000,
  brokerCuts: 3,
  storeKills: 4,
  amqpClose: 'rabbitmqctl',
  rates: {
    duplicate: 0.05,
    handlerError: 0.03,
    timeoutAfterEffect: 0.03,
    poison: 0.005,
    sticky: 0.01,
    lostResponse: 0.1,
    doubleSubmit: 0.05,
  },
  urls: {
    postgres: 'postgres://postgres@127.0.0.1:5432/test',
    redis: 'redis://127.0.0.1:6379',
    amqp: 'amqp://guest:guest@127.0.0.1:5672',
    nats: 'nats://127.0.0.1:4222',
  },
  json: false,
  quiet: false,
  keep: false,
};

/** What the command line asked for: a run, or the usage text. */
export type ParsedArgs = { kind: 'run'; options: ChaosOptions } | { kind: 'help' };

export const USAGE = `npm run chaos -- [flags]

Runs the order workers on RabbitMQ, then NATS JetStream, and the HTTP API, under injected
faults, then checks against PostgreSQL that every effect exists exactly once and nothing was lost.

  --store redis|postgres      idempotency store (default redis)
  --no-idempotency            baseline: plain handler and plain inserts (shows the duplicates)
  --messages N                messages per broker phase (default 10000)
  --http N                    HTTP operations in the run (default 2000)
  --workers N                 worker processes per phase (default 4)
  --kills N                   SIGKILLs of workers in the run (default 20)
  --duration D                time limit of the run, e.g. 90s, 15m (default 15m)
  --seed N                    seed of the fault plan (default: from the clock, printed)
  --phases amqp,nats          brokers to run, in order (default amqp,nats)
  --concurrency N             handlers at once per worker (default 16)
  --lease D                   idempotency lease (default 2s)
  --stalls N                  zombie handlers per phase (default 4)
  --stall D                   how long a zombie stalls (default 6s; more than the lease)
  --outage D                  idempotency store outage per phase (default 3s; 0 for none)
  --broker-cuts N             broker connection closes per phase (default 3)
  --store-kills N             kills of the store's connections per phase (default 4)
  --amqp-close rabbitmqctl|relay   how RabbitMQ connections are closed (default rabbitmqctl)
  --duplicate-rate R, --error-rate R, --timeout-rate R, --poison-rate R, --sticky-rate R,
  --lost-response-rate R, --double-submit-rate R   fault rates in [0, 1]
  --postgres-url U, --redis-url U, --amqp-url U, --nats-url U   the services (default: local)
  --json                      print the report as JSON only
  --quiet                     no progress lines on stderr
  --keep                      keep the run's schemas, keys, queues and streams
  --help                      this text

Exit code: 0 when every invariant holds (under --no-idempotency: when nothing was lost),
1 when one fails, 2 for bad flags, 3 when a service cannot be reached.`;

const RATE_FLAGS: Record<string, keyof FaultRates> = {
  '--duplicate-rate': 'duplicate',
  '--error-rate': 'handlerError',
  '--timeout-rate': 'timeoutAfterEffect',
  '--poison-rate': 'poison',
  '--sticky-rate': 'sticky',
  '--lost-response-rate': 'lostResponse',
  '--double-submit-rate': 'doubleSubmit',
};

const URL_FLAGS: Record<string, keyof ChaosOptions['urls']> = {
  '--postgres-url': 'postgres',
  '--redis-url': 'redis',
  '--amqp-url': 'amqp',
  '--nats-url': 'nats',
};

/**
 * Parses `npm run chaos -- ...` flags (`--flag value` or `--flag=value`). Every problem is an
 * {@link InvalidArgumentError} naming the flag and what it accepts.
 */
export function parseChaosArgs(argv: readonly string[], now: () => number = Date.now): ParsedArgs {
  const options: ChaosOptions = {
    ...DEFAULT_OPTIONS,
    rates: { ...DEFAULT_OPTIONS.rates },
    urls: { ...DEFAULT_OPTIONS.urls },
  };
  let seedGiven = false;
  let stallGiven = false;
  const args = [...argv];
  while (args.length > 0) {
    const raw = args.shift() as string;
    if (raw === '--') continue;
    const eq = raw.indexOf('=');
    const flag = eq > 0 && raw.startsWith('--') ? raw.slice(0, eq) : raw;
    const inline = eq > 0 && raw.startsWith('--') ? raw.slice(eq + 1) : undefined;
    const value = (): string => {
      const v = inline ?? args.shift();
      if (v === undefined || (inline === undefined && v.startsWith('--'))) {
        throw new InvalidArgumentError(`${flag} needs a value`);
      }
      return v;
    };
    switch (flag) {
      case '--help':
      case '-h':
        return { kind: 'help' };
      case '--store': {
        const v = value();
        if (v !== 'redis' && v !== 'postgres') {
          throw new InvalidArgumentError(
            `--store must be redis or postgres, got ${JSON.stringify(v)}`,
          );
        }
        options.store = v;
        break;
      }
      case '--no-idempotency':
        options.idempotency = false;
        break;
      case '--messages':
        options.messages = integer(flag, value(), 1, 1_000_000);
        break;
      case '--http':
        options.httpOps = integer(flag, value(), 0, 1_000_000);
        break;
      case '--workers':
        options.workers = integer(flag, value(), 1, 32);
        break;
      case '--kills':
        options.kills = integer(flag, value(), 0, 10_000);
        break;
      case '--duration':
        options.durationMs = duration(flag, value(), 5_000);
        break;
      case '--seed':
        options.seed = integer(flag, value(), 0, 2 ** 32 - 1);
        seedGiven = true;
        break;
      case '--phases':
        options.phases = phases(value());
        break;
      case '--concurrency':
        options.concurrency = integer(flag, value(), 1, 256);
        break;
      case '--lease':
        options.leaseMs = duration(flag, value(), 300);
        break;
      case '--stalls':
        options.stalls = integer(flag, value(), 0, 1_000);
        break;
      case '--stall':
        options.stallMs = duration(flag, value(), 1);
        stallGiven = true;
        break;
      case '--outage':
        options.outageMs = duration(flag, value(), 0);
        break;
      case '--broker-cuts':
        options.brokerCuts = integer(flag, value(), 0, 1_000);
        break;
      case '--store-kills':
        options.storeKills = integer(flag, value(), 0, 1_000);
        break;
      case '--amqp-close': {
        const v = value();
        if (v !== 'rabbitmqctl' && v !== 'relay') {
          throw new InvalidArgumentError(
            `--amqp-close must be rabbitmqctl or relay, got ${JSON.stringify(v)}`,
          );
        }
        options.amqpClose = v;
        break;
      }
      case '--json':
        options.json = true;
        break;
      case '--quiet':
        options.quiet = true;
        break;
      case '--keep':
        options.keep = true;
        break;
      default: {
        const rate = RATE_FLAGS[flag];
        if (rate !== undefined) {
          options.rates[rate] = fraction(flag, value());
          break;
        }
        const url = URL_FLAGS[flag];
        if (url !== undefined) {
          options.urls[url] = value();
          break;
        }
        throw new InvalidArgumentError(`unknown flag ${JSON.stringify(raw)}; see --help`);
      }
    }
  }
  if (!seedGiven) options.seed = now() % 2 ** 32;
  // A stall must outlast the lease, or there is no zombie: keep the default gap when only
  // the lease was changed.
  if (!stallGiven) options.stallMs = Math.max(options.stallMs, options.leaseMs * 3);
  if (options.stalls > 0 && options.stallMs <= options.leaseMs) {
    throw new InvalidArgumentError(
      `--stall (${options.stallMs} ms) must be longer than --lease (${options.leaseMs} ms): a stalled handler must outlive its lease`,
    );
  }
  return { kind: 'run', options };
}

function integer(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(
      `${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

function fraction(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new InvalidArgumentError(
      `${flag} must be a number from 0 to 1, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

function duration(flag: string, text: string, min: number): number {
  const ms = toMs(/^\d+$/.test(text) ? Number(text) : text, flag);
  if (ms < min) {
    throw new InvalidArgumentError(
      `${flag} must be at least ${min} ms, got ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

function phases(text: string): BrokerKind[] {
  const list = text.split(',').map((s) => s.trim());
  if (list.length === 0 || list.some((p) => p !== 'amqp' && p !== 'nats')) {
    throw new InvalidArgumentError(
      `--phases must list amqp and/or nats separated by commas, got ${JSON.stringify(text)}`,
    );
  }
  if (new Set(list).size !== list.length) {
    throw new InvalidArgumentError(`--phases names a broker twice: ${JSON.stringify(text)}`);
  }
  return list as BrokerKind[];
}
