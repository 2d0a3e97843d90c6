import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Random } from '../src/random.js';
import {
  type QuarantineNote,
  type RunnerCommand,
  type WorkerConfig,
  type WorkerCounts,
  type WorkerReport,
  ZERO_COUNTS,
  addCounts,
} from './protocol.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Workers dying by themselves beyond this is a bug, not chaos: stop restarting them. */
const MAX_CRASHES = 20;
const WORKER_SCRIPT = fileURLToPath(new URL('./worker.ts', import.meta.url));

interface Slot {
  index: number;
  generation: number;
  child: ChildProcess;
  ready: boolean;
  /** Killed by the run (SIGKILL): restart it. */
  killed: boolean;
  /** Handlers of this worker stalled past their lease right now. */
  stalling: number;
  stderr: string;
}

/**
 * The worker processes of one phase: `workers` slots, each running one
 * `node --import tsx chaos/worker.ts` at a time. A worker the run kills is restarted at once
 * as the slot's next generation; one that dies by itself is restarted too, and counted.
 */
export class WorkerPool {
  readonly counts: WorkerCounts = { ...ZERO_COUNTS };
  readonly quarantined: QuarantineNote[] = [];
  killed = 0;
  restarted = 0;
  /** Workers that died without being killed (with the end of their stderr). */
  readonly crashes: string[] = [];
  private readonly slots: Slot[] = [];
  private calm = false;
  private stopping = false;

  constructor(
    private readonly configFor: (index: number, generation: number, calm: boolean) => WorkerConfig,
    private readonly log: (line: string) => void,
  ) {}

  /** Starts `n` workers (without waiting for them to be ready). */
  start(n: number): void {
    for (let i = 0; i < n; i++) this.spawnSlot(i, 0);
  }

  /** Workers that are consuming now. */
  get ready(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  /** Waits until at least `n` workers are consuming, or `deadline` passes. */
  async whenReady(n: number, deadline: number): Promise<boolean> {
    while (this.ready < n) {
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  /**
   * SIGKILLs one ready worker chosen by `random` (it gets no chance to settle, release or
   * flush anything) and starts its replacement. Returns its name, or undefined when no worker
   * is ready.
   */
  kill(random: Random): string | undefined {
    const alive = this.slots.filter((s) => s.ready && !s.killed);
    // Spare a worker whose handler is stalled past its lease while another can go: the zombie
    // must live to attempt its write, or the fence is never put to the test.
    const spare = alive.filter((s) => s.stalling === 0);
    const ready = spare.length > 0 ? spare : alive;
    if (ready.length === 0) return undefined;
    const slot = ready[Math.floor(random() * ready.length)] as Slot;
    slot.killed = true;
    slot.ready = false;
    slot.child.kill('SIGKILL');
    this.killed += 1;
    return `w${slot.index}.${slot.generation}`;
  }

  /** Tells every worker (and every later one) that the faults are over. */
  setCalm(): void {
    this.calm = true;
    for (const slot of this.slots) this.send(slot, { type: 'calm' });
  }

  /** Stops every worker gracefully; SIGKILLs those still alive after `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    this.stopping = true;
    const exits = this.slots.map(
      (slot) =>
        new Promise<void>((resolve) => {
          if (slot.child.exitCode !== null || slot.child.signalCode !== null) {
            resolve();
            return;
          }
          slot.child.once('exit', () => resolve());
          this.send(slot, { type: 'stop' });
        }),
    );
    const timer = setTimeout(() => {
      for (const slot of this.slots) {
        if (slot.child.exitCode === null && slot.child.signalCode === null) {
          this.log(`worker w${slot.index}.${slot.generation} did not stop in time: SIGKILL`);
          slot.child.kill('SIGKILL');
        }
      }
    }, timeoutMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }

  private send(slot: Slot, command: RunnerCommand): void {
    if (slot.child.connected) slot.child.send(command, () => undefined);
  }

  private spawnSlot(index: number, generation: number): void {
    const config = this.configFor(index, generation, this.calm);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', WORKER_SCRIPT, JSON.stringify(config)],
      { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
    );
    const slot: Slot = {
      index,
      generation,
      child,
      ready: false,
      killed: false,
      stalling: 0,
      stderr: '',
    };
    this.slots[index] = slot;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      slot.stderr = (slot.stderr + text).slice(-4000);
    });
    child.on('message', (report: WorkerReport) => {
      if (report.type === 'ready') slot.ready = true;
      else if (report.type === 'counts') {
        addCounts(this.counts, report.counts);
        this.quarantined.push(...report.quarantined);
      } else if (report.type === 'stalling') {
        slot.stalling = report.active;
      } else if (report.type === 'fatal') {
        slot.stderr = `${slot.stderr}\n${report.message}`.slice(-4000);
      }
    });
    child.on('exit', (code, signal) => {
      slot.ready = false;
      if (this.stopping) return;
      if (!slot.killed) {
        const tail = slot.stderr.trim().split('\n').slice(-6).join('\n');
        this.crashes.push(`w${index}.${generation} exited (${signal ?? code}): ${tail}`);
        this.log(
          `worker w${index}.${generation} died by itself (${signal ?? code}); restarting\n${tail}`,
        );
      }
      if (this.crashes.length > MAX_CRASHES) {
        this.log(`more than ${MAX_CRASHES} workers died by themselves: not restarting w${index}`);
        return;
      }
      this.restarted += 1;
      this.spawnSlot(index, generation + 1);
    });
  }
}
