import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkerReport } from './protocol.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER_SCRIPT = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** A worker process, before and after it got its config. */
export interface WorkerProcess {
  readonly child: ChildProcess;
  /** Resolves once it has loaded and waits for its config (rejects if it died first). */
  readonly warm: Promise<void>;
  /** The end of its stderr, for the report when it dies by itself. */
  stderr(): string;
}

/**
 * Starts `node --import tsx chaos/worker.ts` processes ahead of need. Starting node with tsx
 * and loading the drivers takes seconds of CPU on a loaded machine; that is not the system
 * under test, and a phase or a restart should not wait for it. So the launcher keeps up to
 * `warm` processes loaded and idle, and never starts more ahead of time than the run is
 * expected to use (`expected`: the workers of a phase plus the kills, since a worker that
 * finished a phase comes back to serve the next one); a replacement beyond that is started
 * when asked.
 */
export class WorkerLauncher {
  private readonly idle: WorkerProcess[] = [];
  private started = 0;
  private closed = false;

  constructor(
    private readonly warmTarget: number,
    private readonly expected: number,
  ) {}

  /** Starts the first spares. */
  prewarm(): void {
    this.replenish();
  }

  /** A process for a worker: a warm spare when there is one, else a new one. */
  take(): WorkerProcess {
    let proc = this.idle.shift();
    while (proc !== undefined && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      proc = this.idle.shift();
    }
    proc ??= this.launch();
    this.replenish();
    return proc;
  }

  /** Takes back a worker that finished its phase and is warm again. */
  giveBack(proc: WorkerProcess): void {
    const { child } = proc;
    if (this.closed || child.exitCode !== null || child.signalCode !== null) {
      child.kill('SIGKILL');
      return;
    }
    this.idle.push(proc);
  }

  /** Stops the spares nobody took. */
  close(): void {
    this.closed = true;
    for (const proc of this.idle.splice(0)) proc.child.kill('SIGKILL');
  }

  private replenish(): void {
    while (!this.closed && this.idle.length < this.warmTarget && this.started < this.expected) {
      const proc = this.launch();
      this.idle.push(proc);
      // A spare that dies while idle is dropped.
      proc.warm.catch(() => {
        const at = this.idle.indexOf(proc);
        if (at >= 0) this.idle.splice(at, 1);
      });
    }
  }

  private launch(): WorkerProcess {
    this.started += 1;
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER_SCRIPT], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    const warm = new Promise<void>((resolve, reject) => {
      const onMessage = (report: WorkerReport) => {
        if (report.type !== 'warm') return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve();
      };
      const onExit = (code: number | null, signal: string | null) => {
        child.off('message', onMessage);
        reject(
          new Error(`worker process exited before it was warm (${signal ?? code}): ${stderr}`),
        );
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
    });
    warm.catch(() => undefined);
    return { child, warm, stderr: () => stderr };
  }
}
