import { spawn } from 'node:child_process';

/** How a child process ended, with everything it printed. */
export interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node --import tsx ...args` in a child process and resolves once it exited, with its
 * exit code and output (killed after `timeoutMs`, when given).
 */
export function runTsx(args: string[], cwd = process.cwd(), timeoutMs?: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Past it, the child is killed (SIGTERM) and its code is null: it did not end by itself.
      ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
