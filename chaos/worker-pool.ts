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
import type { WorkerLauncher, WorkerProcess } from './worker-launcher.js';

interface Slot {
  index: number;
  generation: number;
  proc: WorkerProcess;
  ready: boolean;
  /** Killed by the run (SIGKILL): restart it. */
  killed: boolean;
  /** Handlers of this worker stalled past their lease right now. */
  stalling: number;
  /** Set once its exit was seen. */
  exited: boolean;
  /** What it reported before it died by itself. */
  fatal: string | undefined;
  /** This pool's listeners on the process, removed when it goes back to the launcher. */
  detach: () => void;
}

/** Workers dying by themselves beyond this is a bug, not chaos: stop restarting them. */
const MAX_CRASHES = 20;

/**
 * The worker processes of one phase: `workers` slots, each running one worker at a time. A
 * worker the run kills is replaced at once by the slot's next generation (a warm spare from
 * the launcher); one that dies by itself is replaced too, and counted as a crash.
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
    private readonly launcher: WorkerLauncher,
    private readonly configFor: (index: number, generation: number, calm: boolean) => WorkerConfig,
    private readonly log: (line: string) => void,
  ) {}

  /** Starts `n` workers (without waiting for them to be ready). */
  start(n: number): void {
    for (let i = 0; i < n; i++) this.run(i, 0);
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
   * can be killed now (none ready, or only those holding a stalled handler).
   */
  kill(random: Random): string | undefined {
    // Spare a worker whose handler is stalled past its lease (the kill waits for another one
    // to be ready): the zombie must live to attempt its write, or the fence is never tested.
    const ready = this.slots.filter((s) => s.ready && !s.killed && s.stalling === 0);
    if (ready.length === 0) return undefined;
    const slot = ready[Math.floor(random() * ready.length)] as Slot;
    slot.killed = true;
    slot.ready = false;
    slot.proc.child.kill('SIGKILL');
    this.killed += 1;
    return `w${slot.index}.${slot.generation}`;
  }

  /** Tells every worker (and every later one) that the faults are over. */
  setCalm(): void {
    this.calm = true;
    for (const slot of this.slots) this.send(slot, { type: 'calm' });
  }

  /**
   * Stops every worker gracefully: it stops consuming, closes its connections and goes back
   * to the launcher warm, to serve the next phase. SIGKILLs those not done after `timeoutMs`.
   */
  async stop(timeoutMs = 15_000): Promise<void> {
    this.stopping = true;
    const done = this.slots.map(
      (slot) =>
        new Promise<void>((resolve) => {
          const { child } = slot.proc;
          if (slot.exited || child.exitCode !== null || child.signalCode !== null) {
            slot.detach();
            resolve();
            return;
          }
          const onMessage = (report: WorkerReport) => {
            if (report.type !== 'warm') return;
            finish();
            this.launcher.giveBack(slot.proc);
          };
          const finish = () => {
            child.off('message', onMessage);
            child.off('exit', finish);
            slot.detach();
            resolve();
          };
          child.on('message', onMessage);
          child.once('exit', finish);
          this.send(slot, { type: 'stop' });
        }),
    );
    const timer = setTimeout(() => {
      for (const slot of this.slots) {
        const { child } = slot.proc;
        if (!slot.exited && child.exitCode === null && child.signalCode === null) {
          this.log(`worker w${slot.index}.${slot.generation} did not stop in time: SIGKILL`);
          child.kill('SIGKILL');
        }
      }
    }, timeoutMs);
    await Promise.all(done);
    clearTimeout(timer);
  }

  private send(slot: Slot, command: RunnerCommand): void {
    const { child } = slot.proc;
    if (child.connected) child.send(command, () => undefined);
  }

  private run(index: number, generation: number): void {
    const proc = this.launcher.take();
    const slot: Slot = {
      index,
      generation,
      proc,
      ready: false,
      killed: false,
      stalling: 0,
      exited: false,
      fatal: undefined,
      detach: () => {
        child.off('message', onMessage);
        child.off('exit', onExit);
      },
    };
    this.slots[index] = slot;
    const { child } = proc;
    const onMessage = (report: WorkerReport) => {
      if (report.type === 'ready') slot.ready = true;
      else if (report.type === 'counts') {
        addCounts(this.counts, report.counts);
        this.quarantined.push(...report.quarantined);
      } else if (report.type === 'stalling') {
        slot.stalling = report.active;
      } else if (report.type === 'fatal') {
        slot.fatal = report.message;
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      this.onExit(slot, code, signal);
    child.on('message', onMessage);
    child.on('exit', onExit);
    proc.warm.then(
      () =>
        this.send(slot, { type: 'config', config: this.configFor(index, generation, this.calm) }),
      () => undefined, // died before it was warm: onExit restarts the slot
    );
  }

  private onExit(slot: Slot, code: number | null, signal: string | null): void {
    slot.exited = true;
    slot.ready = false;
    if (this.stopping || this.slots[slot.index] !== slot) return;
    const name = `w${slot.index}.${slot.generation}`;
    if (!slot.killed) {
      const tail = (slot.fatal ?? slot.proc.stderr()).trim().split('\n').slice(-6).join('\n');
      this.crashes.push(`${name} exited (${signal ?? code}): ${tail}`);
      this.log(`worker ${name} died by itself (${signal ?? code}); restarting\n${tail}`);
      if (this.crashes.length > MAX_CRASHES) {
        this.log(`more than ${MAX_CRASHES} workers died by themselves: not restarting`);
        return;
      }
    }
    this.restarted += 1;
    this.run(slot.index, slot.generation + 1);
  }
}
