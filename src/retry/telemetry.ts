import {
  type Attributes,
  type Context,
  type Counter,
  type Gauge,
  type Histogram,
  type MeterProvider,
  ProxyTracerProvider,
  type Span,
  SpanStatusCode,
  context,
  createNoopMeter,
  metrics,
  trace,
} from '@opentelemetry/api';
import type { GiveUpEvent } from './types.js';

/*
 * OpenTelemetry for retry(), through @opentelemetry/api only: without an SDK every call is
 * a no-op, and we go further and skip the work altogether (no span object, no attribute
 * maps) when neither a tracer nor a meter provider is registered, so the success path of a
 * retry costs nothing extra. Names:
 *
 * span `retry <name>` per retry() call, attributes `reprocess.retry.name`,
 *   `reprocess.retry.max_attempts`, `reprocess.retry.attempts`, `reprocess.retry.outcome`;
 *   an event `retry.attempt_failed` per failed attempt (attempt, error type, delay).
 * counter   `reprocess.retry.attempts`        every attempt made
 * counter   `reprocess.retry.calls`           per call, attribute `outcome`
 *                                             (success | not_retryable | attempts | deadline
 *                                             | budget | aborted)
 * histogram `reprocess.retry.delay`           ms slept before a retry
 * gauge     `reprocess.retry.budget.remaining` what the budget can still pay
 */

const SCOPE = 'reprocess';
/**
 * Where @opentelemetry/api 1.x registers its globals. Absent until some SDK registers a
 * provider, so one property read tells the common case (no SDK at all) apart.
 */
const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');
const NoopMeter = createNoopMeter().constructor;

interface Instruments {
  attempts: Counter;
  calls: Counter;
  delay: Histogram;
  budget: Gauge;
}

let instrumentsFor: MeterProvider | undefined;
let instruments: Instruments | undefined;

function currentInstruments(): Instruments | undefined {
  const provider = metrics.getMeterProvider();
  if (provider !== instrumentsFor) {
    instrumentsFor = provider;
    const meter = provider.getMeter(SCOPE);
    instruments =
      meter.constructor === NoopMeter
        ? undefined
        : {
            attempts: meter.createCounter('reprocess.retry.attempts', {
              description: 'Attempts made by retry(), first attempts included',
            }),
            calls: meter.createCounter('reprocess.retry.calls', {
              description: 'retry() calls by outcome',
            }),
            delay: meter.createHistogram('reprocess.retry.delay', {
              description: 'Delay slept before a retry',
              unit: 'ms',
            }),
            budget: meter.createGauge('reprocess.retry.budget.remaining', {
              description: 'What the retry budget can still pay',
            }),
          };
  }
  return instruments;
}

function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider();
  // The API's own proxy answers no-op tracers until an SDK sets its delegate.
  if (provider instanceof ProxyTracerProvider) {
    return provider.getDelegateTracer(SCOPE) !== undefined;
  }
  return true;
}

/** Telemetry of one retry() call. */
export interface CallTelemetry {
  /** Context to run attempts in (the call's span active), when tracing. */
  readonly context: Context | undefined;
  attempt(attempt: number): void;
  failed(attempt: number, error: unknown, delay: number, budgetRemaining: number | undefined): void;
  success(attempts: number): void;
  giveUp(event: GiveUpEvent): void;
}

/**
 * Starts the telemetry of one call, or returns `undefined` when no tracer and no meter
 * provider is registered (the common, free case).
 */
export function startCallTelemetry(
  name: string | undefined,
  maxAttempts: number,
): CallTelemetry | undefined {
  if ((globalThis as Record<symbol, unknown>)[OTEL_GLOBAL] === undefined) return undefined;
  const meters = currentInstruments();
  const tracing = tracingEnabled();
  if (!meters && !tracing) return undefined;
  const label = name ?? 'operation';
  const attrs: Attributes = { 'reprocess.retry.name': label };
  let span: Span | undefined;
  let ctx: Context | undefined;
  if (tracing) {
    span = trace.getTracer(SCOPE).startSpan(`retry ${label}`, {
      attributes: { 'reprocess.retry.name': label, 'reprocess.retry.max_attempts': maxAttempts },
    });
    ctx = trace.setSpan(context.active(), span);
  }
  return {
    context: ctx,
    attempt() {
      meters?.attempts.add(1, attrs);
    },
    failed(attempt, error, delay, budgetRemaining) {
      meters?.delay.record(delay, attrs);
      if (budgetRemaining !== undefined) meters?.budget.record(budgetRemaining, attrs);
      span?.addEvent('retry.attempt_failed', {
        'reprocess.retry.attempt': attempt,
        'error.type': errorType(error),
        'reprocess.retry.delay_ms': delay,
      });
    },
    success(attempts) {
      meters?.calls.add(1, { ...attrs, outcome: 'success' });
      if (span) {
        span.setAttributes({
          'reprocess.retry.attempts': attempts,
          'reprocess.retry.outcome': 'success',
        });
        span.end();
      }
    },
    giveUp(event) {
      meters?.calls.add(1, { ...attrs, outcome: event.reason });
      if (span) {
        span.setAttributes({
          'reprocess.retry.attempts': event.attempts,
          'reprocess.retry.outcome': event.reason,
        });
        if (event.error instanceof Error) span.recordException(event.error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: `gave up: ${event.reason}` });
        span.end();
      }
    },
  };
}

function errorType(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? code : error.name;
  }
  return typeof error === 'object' && error !== null ? 'result' : typeof error;
}
