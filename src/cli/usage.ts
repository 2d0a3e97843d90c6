/** One line per command, in the order `reprocess --help` lists them. */
export const COMMAND_SUMMARIES: Readonly<Record<string, string>> = {
  check: 'validate a config file and print the effective retry policy and its delays',
  demo: 'run the payment story with and without protection and write an HTML report',
  simulate: 'compare backoff, jitter and budgets under a dependency outage',
  records: 'list, show and delete idempotency records',
  store: 'prepare an idempotency store (init: create its table or schema)',
  dlq: 'inspect and redrive quarantined messages',
};

/** The top-level usage text. */
export function usage(): string {
  const width = Math.max(...Object.keys(COMMAND_SUMMARIES).map((c) => c.length));
  const commands = Object.entries(COMMAND_SUMMARIES)
    .map(([name, summary]) => `  ${name.padEnd(width)}  ${summary}`)
    .join('\n');
  return `Usage: reprocess <command> [options]

Commands:
${commands}

Options:
  -h, --help     show this help (reprocess <command> --help for a command's own)
  -v, --version  print the version

Exit codes: 0 ok, 1 failure, 2 usage error.`;
}
