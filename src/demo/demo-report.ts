import { type Report, type ReportCell, textTable } from '../report/html-report.js';
import { barChart, histogramChart, lineChart } from '../report/svg-chart.js';
import type { DemoResult, ModeResult } from './run-demo.js';

interface Row {
  label: string;
  pick: (m: ModeResult) => number;
  /** A number that must be zero with protection (and shows the harm without it). */
  harm?: boolean;
}

const ROWS: Row[] = [
  { label: 'payment requests', pick: (m) => m.requests },
  { label: 'HTTP attempts', pick: (m) => m.attempts },
  { label: 'retries', pick: (m) => m.retries },
  { label: 'responses lost on the way back', pick: (m) => m.lostResponses },
  { label: 'replays served (Idempotent-Replayed)', pick: (m) => m.replaysServed },
  { label: '409 in progress', pick: (m) => m.inProgress409 },
  { label: 'handler runs', pick: (m) => m.handlerRuns },
  { label: 'provider calls', pick: (m) => m.providerCalls },
  { label: 'receipt deliveries', pick: (m) => m.receiptDeliveries },
  { label: 'worker crashes', pick: (m) => m.workerCrashes },
  { label: 'quarantined', pick: (m) => m.quarantined },
  { label: 'redriven', pick: (m) => m.redriven },
  { label: 'left in quarantine (bounced address)', pick: (m) => m.stillQuarantined },
  { label: 'payments that failed (gave up)', pick: (m) => m.paymentsFailed, harm: true },
  { label: 'customers charged twice', pick: (m) => m.chargedTwice, harm: true },
  { label: 'duplicate orders', pick: (m) => m.duplicateOrders, harm: true },
  { label: 'emails sent twice', pick: (m) => m.emailsSentTwice, harm: true },
  { label: 'orders lost (charged, no order)', pick: (m) => m.ordersLost, harm: true },
  { label: 'receipts never sent', pick: (m) => m.receiptsNeverSent, harm: true },
];

function cell(value: number, harm: boolean | undefined): ReportCell {
  if (!harm) return value;
  return { value, tone: value === 0 ? 'good' : 'bad' };
}

function rows(result: DemoResult): ReportCell[][] {
  return ROWS.map((r) => [
    r.label,
    cell(r.pick(result.unprotected), r.harm),
    cell(r.pick(result.protected), r.harm),
  ]);
}

/** The side-by-side table for the terminal. */
export function demoTable(result: DemoResult): string {
  return textTable(['', 'without reprocess', 'with reprocess'], rows(result));
}

/** A few sentences that say what the numbers mean. */
export function demoSummary(result: DemoResult): string[] {
  const u = result.unprotected;
  const p = result.protected;
  const f = u.faults;
  return [
    `${result.invoices} payments, the same seeded traffic and faults both times (seed ${result.seed}): ` +
      `order writes timing out after the charge (${f.orderTimeout}), responses lost on the way back (${f.lostResponse}), ` +
      `slow order writes (${f.slowOrder}), receipts delivered twice (${f.duplicateDelivery}), workers crashing mid-handler (${f.workerCrash}), ` +
      `a payment provider answering 429/503 with Retry-After (${u.providerBusy} answers), and an email outage.`,
    `Without reprocess, every retry ran the whole payment again: ${u.chargedTwice} customers were charged twice, ` +
      `${u.duplicateOrders} orders were written twice, ${u.emailsSentTwice} receipts went out twice and ${u.receiptsNeverSent} never went out.`,
    `With reprocess, the ${p.retries} retries carried one Idempotency-Key per payment: ${p.replaysServed} were answered from the ` +
      `stored response, the charge and the order ran as steps (the provider got a derived key), the receipt worker ` +
      `retried on the async profile, quarantined ${p.quarantined} messages and redrove ${p.redriven} once the email provider was back. ` +
      `Customers charged twice: ${p.chargedTwice}; emails sent twice: ${p.emailsSentTwice}; orders lost: ${p.ordersLost}.`,
  ];
}

function perBucket(times: readonly number[], bucketMs: number): Array<readonly [number, number]> {
  const counts: number[] = [];
  for (const t of times) {
    const b = Math.floor(t / bucketMs);
    counts[b] = (counts[b] ?? 0) + 1;
  }
  return Array.from(
    { length: counts.length },
    (_, i) => [(i * bucketMs) / 1000, ((counts[i] ?? 0) * 1000) / bucketMs] as const,
  );
}

/** The HTML report of a demo run. */
export function demoReport(result: DemoResult): Report {
  const u = result.unprotected;
  const p = result.protected;
  return {
    title: 'reprocess demo: the payment story',
    subtitle: `${result.invoices} payments · seed ${result.seed} · protected store ${result.store}`,
    sections: [
      {
        heading: 'What happened',
        paragraphs: demoSummary(result),
        figures: [
          {
            label: 'charged twice, without',
            value: u.chargedTwice,
            tone: u.chargedTwice > 0 ? 'bad' : 'good',
          },
          {
            label: 'charged twice, with reprocess',
            value: p.chargedTwice,
            tone: p.chargedTwice > 0 ? 'bad' : 'good',
          },
          {
            label: 'emails twice, without',
            value: u.emailsSentTwice,
            tone: u.emailsSentTwice > 0 ? 'bad' : 'good',
          },
          {
            label: 'emails twice, with reprocess',
            value: p.emailsSentTwice,
            tone: p.emailsSentTwice > 0 ? 'bad' : 'good',
          },
          { label: 'replays served', value: p.replaysServed },
          { label: 'quarantined, then redriven', value: `${p.quarantined} → ${p.redriven}` },
        ],
        tables: [
          {
            caption: 'Side by side',
            columns: ['', 'without reprocess', 'with reprocess'],
            rows: rows(result),
          },
        ],
        charts: [
          barChart({
            title: 'Harm done: the same faults, with and without reprocess',
            yLabel: 'count',
            categories: [
              'charged twice',
              'duplicate orders',
              'emails twice',
              'receipts never sent',
              'orders lost',
            ],
            series: [u, p].map((m) => ({
              name: m.mode === 'protected' ? 'with reprocess' : 'without reprocess',
              values: [
                m.chargedTwice,
                m.duplicateOrders,
                m.emailsSentTwice,
                m.receiptsNeverSent,
                m.ordersLost,
              ],
            })),
          }),
        ],
      },
      {
        heading: 'The synchronous path: attempts and delays',
        paragraphs: [
          'The unprotected client retries at once and ignores Retry-After; the protected one follows the sync profile (exponential backoff, full jitter, inside a latency budget) and waits out a 409 or a Retry-After.',
        ],
        charts: [
          lineChart({
            title: 'HTTP attempts per second',
            xLabel: 'time since the run began (s)',
            yLabel: 'attempts / s',
            series: [
              { name: 'without reprocess', points: perBucket(u.attemptTimes, 250) },
              { name: 'with reprocess', points: perBucket(p.attemptTimes, 250) },
            ],
          }),
          histogramChart({
            title: 'Delay before a retry',
            xLabel: 'delay (ms)',
            series: [
              { name: 'without reprocess (immediate)', values: u.retryDelays },
              { name: 'with reprocess (sync profile)', values: p.retryDelays },
            ],
          }),
        ],
      },
      {
        heading: 'Outcomes per path',
        charts: [
          barChart({
            title: 'API path',
            yLabel: 'count',
            categories: [
              'attempts',
              'handler runs',
              'replays',
              '409s',
              'lost responses',
              'provider calls',
            ],
            series: [u, p].map((m) => ({
              name: m.mode === 'protected' ? 'with reprocess' : 'without reprocess',
              values: [
                m.attempts,
                m.handlerRuns,
                m.replaysServed,
                m.inProgress409,
                m.lostResponses,
                m.providerCalls,
              ],
            })),
          }),
          barChart({
            title: 'Worker path',
            yLabel: 'count',
            categories: [
              'deliveries',
              'crashes',
              'quarantined',
              'redriven',
              'emails twice',
              'never sent',
            ],
            series: [u, p].map((m) => ({
              name: m.mode === 'protected' ? 'with reprocess' : 'without reprocess',
              values: [
                m.receiptDeliveries,
                m.workerCrashes,
                m.quarantined,
                m.redriven,
                m.emailsSentTwice,
                m.receiptsNeverSent,
              ],
            })),
          }),
        ],
      },
    ],
  };
}
