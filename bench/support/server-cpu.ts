/**
 * CPU time spent by the local servers a bench talks to (the broker, Redis), and by the whole
 * machine, over a timed window: read from /proc on Linux, so only for servers on this machine.
 *
 * A client-side rate compares two loops that share the machine's cores with those servers. When
 * the raw loop already keeps every core busy, what the consumer adds per message (its store,
 * the runtime) can only come out of the same cores, and the ratio of the two rates is bounded
 * by the ratio of their CPU per message, whatever the client does. These readings show that
 * budget beside the rates.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { cpus } from 'node:os';

/** Clock ticks per second of /proc times (`getconf CLK_TCK`: 100 on Linux for x86 and arm). */
const TICKS_PER_SECOND = 100;

export interface CpuMark {
  /** CPU seconds of each watched server, by name. */
  servers: Map<string, number>;
  /** Busy ticks of the whole machine (every core: all but idle and iowait). */
  machineBusy: number;
  at: number;
}

export interface CpuSpent {
  /** CPU µs of each watched server over the window, by name. */
  serversUs: Map<string, number>;
  /** Cores kept busy on average over the window, by every process of the machine. */
  busyCores: number;
}

/** Process ids of the servers by their command name (`beam.smp`, `redis-server`...). */
export function findServers(names: readonly string[]): Map<string, number> {
  const found = new Map<string, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (names.includes(comm) && !found.has(comm)) found.set(comm, Number(entry));
    } catch {
      // The process ended while the list was read.
    }
  }
  return found;
}

/** CPU seconds (user + system) a process has used, from /proc; undefined elsewhere. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

function machineBusyTicks(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [, ...values] = line.trim().split(/\s+/);
    const ticks = values.map(Number);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return total - idle;
  } catch {
    return Number.NaN;
  }
}

export function markCpu(servers: Map<string, number>): CpuMark {
  const marks = new Map<string, number>();
  for (const [name, pid] of servers) {
    const seconds = processCpuSeconds(pid);
    if (seconds !== undefined) marks.set(name, seconds);
  }
  return { servers: marks, machineBusy: machineBusyTicks(), at: performance.now() };
}

export function cpuSince(start: CpuMark, servers: Map<string, number>): CpuSpent {
  const end = markCpu(servers);
  const serversUs = new Map<string, number>();
  for (const [name, seconds] of end.servers) {
    const before = start.servers.get(name);
    if (before !== undefined) serversUs.set(name, (seconds - before) * 1e6);
  }
  const seconds = (end.at - start.at) / 1000;
  const busyCores = (end.machineBusy - start.machineBusy) / TICKS_PER_SECOND / seconds;
  return { serversUs, busyCores };
}

/** Cores of this machine. */
export const CORES = cpus().length;
