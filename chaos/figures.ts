import type { ChaosReport } from './report.js';

/** The report as the text `npm run chaos` prints: the figures, per phase, then the checks. */
export function formatFigures(report: ChaosReport): string {
  const t = report.totals;
  const f = t.faults;
  const lines: string[] = [];
  const row = (label: string, value: string | number, note = '') =>
    lines.push(
      `  ${label.padEnd(44, ' ')} ${String(value).padStart(9, ' ')}${note ? `  ${note}` : ''}`,
    );
  const mode = report.idempotency ? 'with reprocess' : 'BASELINE, no idempotency';

  lines.push(
    `chaos run ${report.runId} (${mode}; store ${report.store}; seed ${report.seed}) in ${report.elapsedSeconds} s`,
  );
  lines.push(
    `  ${report.config.phases.join(' + ')}, ${report.config.messagesPerPhase} messages per phase, ${report.config.workers} workers x ${report.config.concurrency}, lease ${report.config.leaseMs} ms`,
  );
  lines.push('');
  lines.push('figures');
  row('messages (unique)', t.messages, `${t.publications} publications`);
  row('HTTP operations', t.httpOperations, `${t.httpRequests} requests`);
  row('workers killed (SIGKILL, restarted)', t.workersKilled);
  lines.push('  faults injected');
  row('  handler exceptions', f.handlerExceptions);
  row('  dependency timeouts after the effect', f.timeoutsAfterEffect);
  row('  duplicate publications', f.duplicatePublications);
  row(
    '  broker connections closed by the server',
    f.brokerConnectionsClosedByServer,
    `${f.brokerClosesByServer} time(s), rabbitmqctl`,
  );
  row(
    '  broker connections cut at the relay',
    f.brokerConnectionsCutAtRelay,
    `${f.brokerCutsAtRelay} time(s)`,
  );
  row(
    '  store connections killed on the server',
    f.storeConnectionsKilled,
    `${f.storeConnectionKills} time(s), ${report.store === 'redis' ? 'CLIENT KILL' : 'pg_terminate_backend'}`,
  );
  row(
    '  store outages',
    f.storeOutages,
    `${f.storeOutageSeconds} s in total${report.idempotency ? '' : ' (the baseline uses no store)'}`,
  );
  row('  leases expired under a stalled handler', f.leaseExpiries);
  row('  sticky dependency failures', f.stickyDependencyFailures);
  row('  HTTP responses lost', f.lostHttpResponses);
  row('  HTTP double submits', f.doubleSubmits);
  row('duplicates delivered (completed, replayed)', t.duplicatesDelivered);
  row('deliveries bounced: in progress elsewhere', t.inProgressBounces);
  row('deliveries bounced: store unavailable', t.storeUnavailableBounces, 'handler not run');
  row('replays served', t.replaysServed, 'consumers + HTTP');
  row('quarantined', t.quarantined, `${t.quarantinedAtEnd} still there at the end (poison)`);
  row('redriven', t.redriven);
  row('writes fenced at the resource (stale token)', t.fencedWrites);
  row('re-executions absorbed at the resource', t.absorbedReexecutions);
  row(
    'duplicate effects',
    t.duplicateEffects,
    report.idempotency ? 'must be 0' : 'the baseline shows them',
  );
  row('lost messages', t.lostMessages, 'must be 0');

  for (const p of report.phases) {
    lines.push('');
    lines.push(
      `phase ${p.phase} (${p.source}): main ${p.mainSeconds} s, drain ${p.drainSeconds} s${p.mainTimedOut ? ', main stage cut short' : ''}${p.timedOut ? ', DRAIN TIMED OUT' : ''}`,
    );
    const w = p.workers;
    lines.push(
      `  ${p.messages} messages, ${p.verdict.done} done, ${p.verdict.quarantined} in quarantine, ${p.verdict.lost} lost, ${p.verdict.duplicateEffects} duplicate effects`,
    );
    lines.push(
      `  runs ${w.runs}, acked ${w.acked} (${w.replayed} replayed), retried ${w.retriedFailure} + ${w.retriedInProgress} in progress + ${w.retriedStoreUnavailable} store down, quarantined ${p.quarantineEvents}, redriven ${p.redriven}`,
    );
    lines.push(
      `  killed ${p.faults.workersKilled}, handler exceptions ${w.handlerErrors}, timeouts after effect ${w.timeoutsAfterEffect}, stalls ${w.stalls}, fenced ${w.fenced}, absorbed ${w.absorbed}, settle refusals ${w.settleFailures}`,
    );
    if (p.verdict.lostIds.length > 0) lines.push(`  lost: ${p.verdict.lostIds.join(', ')}`);
    if (p.verdict.badHistories.length > 0) {
      lines.push(`  bad histories: ${p.verdict.badHistories.join('; ')}`);
    }
  }

  const h = report.http;
  lines.push('');
  lines.push(
    `HTTP: ${h.verdict.ops} operations, ${h.verdict.executedOnce} executed exactly once, ${h.verdict.missing} missing, ${h.verdict.failed} failed for the client; ${h.counts.executions} handler runs, ${h.counts.clientRetries} client-level retries, statuses ${JSON.stringify(h.counts.statuses)}`,
  );

  lines.push('');
  lines.push('checks');
  for (const check of report.checks) {
    const expected = !report.idempotency && check.brokenByBaseline === true && !check.ok;
    const mark = check.ok ? 'ok  ' : expected ? 'SHOWN' : 'FAIL';
    const note = expected ? ' (broken without idempotency, as expected)' : '';
    lines.push(`  ${mark.padEnd(5, ' ')} ${check.name}: ${check.detail}${note}`);
  }
  lines.push('');
  lines.push(report.ok ? 'result: OK' : 'result: FAILED');
  return lines.join('\n');
}
