import {
  type Attributes,
  type Context,
  type Meter,
  type MeterProvider,
  type Span,
  type SpanOptions,
  type Tracer,
  type TracerProvider,
  createNoopMeter,
  metrics,
  trace,
} from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retry } from '../../src/retry/retry.js';
import { createTokenBucketBudget } from '../../src/retry/token-bucket-budget.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { codeError, drive, statusError } from './helpers.js';

/*
 * A minimal recording provider, standing in for an OpenTelemetry SDK (none is installed):
 * it implements the API's interfaces and keeps what it was given.
 */
interface RecordedSpan {
  name: string;
  attributes: Attributes;
  events: { name: string; attributes: Attributes | undefined }[];
  status: number | undefined;
  exceptions: unknown[];
  ended: boolean;
}
const spans: RecordedSpan[] = [];
const points: { instrument: string; value: number; attributes: Attributes | undefined }[] = [];

function recordingSpan(name: string, options: SpanOptions | undefined): Span {
  const rec: RecordedSpan = {
    name,
    attributes: { ...options?.attributes },
    events: [],
    status: undefined,
    exceptions: [],
    ended: false,
  };
  spans.push(rec);
  const span = {
    spanContext: () => ({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: 1 }),
    setAttribute: (k: string, v: unknown) => {
      rec.attributes[k] = v as never;
      return span;
    },
    setAttributes: (a: Attributes) => {
      Object.assign(rec.attributes, a);
      return span;
    },
    addEvent: (n: string, a?: Attributes) => {
      rec.events.push({ name: n, attributes: a });
      return span;
    },
    addLink: () => span,
    addLinks: () => span,
    setStatus: (s: { code: number }) => {
      rec.status = s.code;
      return span;
    },
    updateName: () => span,
    end: () => {
      rec.ended = true;
    },
    isRecording: () => true,
    recordException: (e: unknown) => {
      rec.exceptions.push(e);
    },
  };
  return span as unknown as Span;
}

const tracer: Tracer = {
  startSpan: (name: string, options?: SpanOptions, _ctx?: Context) => recordingSpan(name, options),
  startActiveSpan: (() => {
    throw new Error('not used');
  }) as never,
};
const tracerProvider: TracerProvider = { getTracer: () => tracer };

const noop = createNoopMeter();
const recordingMeter = {
  ...noop,
  createCounter: (name: string) => ({
    add: (value: number, attributes?: Attributes) =>
      points.push({ instrument: name, value, attributes }),
  }),
  createHistogram: (name: string) => ({
    record: (value: number, attributes?: Attributes) =>
      points.push({ instrument: name, value, attributes }),
  }),
  createGauge: (name: string) => ({
    record: (value: number, attributes?: Attributes) =>
      points.push({ instrument: name, value, attributes }),
  }),
} as unknown as Meter;
const meterProvider: MeterProvider = { getMeter: () => recordingMeter };

beforeAll(() => {
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
});
afterAll(() => {
  trace.disable();
  metrics.disable();
});

describe('OpenTelemetry', () => {
  it('a successful call: one span, one attempt, outcome success', async () => {
    spans.length = 0;
    points.length = 0;
    await expect(retry(async () => 1, { name: 'payments' })).resolves.toBe(1);
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({
      name: 'retry payments',
      ended: true,
      attributes: {
        'reprocess.retry.name': 'payments',
        'reprocess.retry.attempts': 1,
        'reprocess.retry.outcome': 'success',
      },
    });
    expect(points).toEqual([
      {
        instrument: 'reprocess.retry.attempts',
        value: 1,
        attributes: { 'reprocess.retry.name': 'payments' },
      },
      {
        instrument: 'reprocess.retry.calls',
        value: 1,
        attributes: { 'reprocess.retry.name': 'payments', outcome: 'success' },
      },
    ]);
  });

  it('retries: an event per failed attempt with the delay, delay histogram and budget gauge', async () => {
    spans.length = 0;
    points.length = 0;
    const clock = new FakeClock(0);
    const budget = createTokenBucketBudget({ capacity: 20 });
    const e = codeError('ECONNRESET');
    let n = 0;
    const fn = async () => {
      if (++n < 3) throw e;
      return 'ok';
    };
    await drive(clock, retry(fn, { clock, budget, jitter: 'none', base: 100 }));
    const span = spans[0];
    expect(span?.events).toEqual([
      {
        name: 'retry.attempt_failed',
        attributes: {
          'reprocess.retry.attempt': 1,
          'error.type': 'ECONNRESET',
          'reprocess.retry.delay_ms': 100,
        },
      },
      {
        name: 'retry.attempt_failed',
        attributes: {
          'reprocess.retry.attempt': 2,
          'error.type': 'ECONNRESET',
          'reprocess.retry.delay_ms': 200,
        },
      },
    ]);
    expect(span?.attributes['reprocess.retry.attempts']).toBe(3);
    const by = (name: string) => points.filter((p) => p.instrument === name).map((p) => p.value);
    expect(by('reprocess.retry.attempts')).toEqual([1, 1, 1]);
    expect(by('reprocess.retry.delay')).toEqual([100, 200]);
    expect(by('reprocess.retry.budget.remaining')).toEqual([15, 10]);
  });

  it('a budget whose remaining() throws (kept in a store that is down) changes nothing: retried, span ended', async () => {
    spans.length = 0;
    points.length = 0;
    const clock = new FakeClock(0);
    const budget = createTokenBucketBudget({ capacity: 20 });
    budget.remaining = () => {
      throw new Error('budget store unreachable');
    };
    let n = 0;
    const fn = async () => {
      if (++n < 2) throw codeError('ECONNRESET');
      return 'ok';
    };
    const settled = await drive(clock, retry(fn, { clock, budget, jitter: 'none', base: 100 }));
    expect(settled).toEqual({ ok: true, value: 'ok' });
    expect(n).toBe(2);
    expect(spans).toHaveLength(1);
    expect(spans[0]?.ended).toBe(true);
    expect(points.filter((p) => p.instrument === 'reprocess.retry.budget.remaining')).toEqual([]);
  });

  it('a give-up marks the span as an error with the reason', async () => {
    spans.length = 0;
    points.length = 0;
    const notFound = statusError(404);
    await expect(
      retry(async () => {
        throw notFound;
      }),
    ).rejects.toBe(notFound);
    expect(spans[0]?.status).toBe(2); // SpanStatusCode.ERROR
    expect(spans[0]?.exceptions).toEqual([notFound]);
    expect(spans[0]?.attributes['reprocess.retry.outcome']).toBe('not_retryable');
    expect(points.find((p) => p.instrument === 'reprocess.retry.calls')?.attributes).toEqual({
      'reprocess.retry.name': 'operation',
      outcome: 'not_retryable',
    });
  });
});
