/** Process and machine figures from /proc (Linux). */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

let clockTicks = 0
/** Clock ticks per second of /proc/PID/stat times (getconf CLK_TCK, normally 100). */
export function clkTck (): number {
  if (clockTicks === 0) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

export interface ProcCpu {
  /** Seconds of user and system CPU since the process started. */
  user: number
  system: number
}

/** utime and stime (fields 14 and 15) of /proc/PID/stat, in seconds. */
export function readProcCpu (pid: number): ProcCpu {
  return readStatCpu(`/proc/${pid}/stat`)
}

/** The same for each thread of the process (/proc/PID/task/TID/stat), by thread id. */
export function readThreadCpu (pid: number): Map<number, ProcCpu> {
  const threads = new Map<number, ProcCpu>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) threads.set(Number(tid), readStatCpu(`/proc/${pid}/task/${tid}/stat`))
  return threads
}

function readStatCpu (path: string): ProcCpu {
  const stat = readFileSync(path, 'utf8')
  // The command name (field 2) may contain spaces: fields are counted after its closing ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = clkTck()
  return { user: Number(fields[11]) / ticks, system: Number(fields[12]) / ticks }
}

/** VmRSS of /proc/PID/status, in bytes. */
export function readRss (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  return match === null ? 0 : Number(match[1]) * 1024
}

export interface MachineCpu {
  /** Jiffies (CLK_TCK), summed over all CPUs: busy excludes idle, iowait and steal. */
  busy: number
  /** Interrupt and softirq time (on loopback most of it is the network stack), part of busy. */
  irq: number
  steal: number
  total: number
}

/** Whole-machine CPU counters from the first line of /proc/stat. */
export function readMachineCpu (): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
  const values = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = (values[3] ?? 0) + (values[4] ?? 0)
  const steal = values[7] ?? 0
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0)
  const irq = (values[5] ?? 0) + (values[6] ?? 0)
  return { busy: total - idle - steal, irq, steal, total }
}

/** Sums the CPU of several processes (the nodes of a cluster). */
export function sumCpu (pids: number[]): ProcCpu {
  let user = 0
  let system = 0
  for (const pid of pids) {
    const cpu = readProcCpu(pid)
    user += cpu.user
    system += cpu.system
  }
  return { user, system }
}

/** Busy share of all cores (0-100) over `ms` milliseconds. */
export async function machineBusyPct (ms: number): Promise<number> {
  const a = readMachineCpu()
  await new Promise(resolve => setTimeout(resolve, ms))
  const b = readMachineCpu()
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) * 100 : 0
}

/**
 * Waits until the machine is quiet (busy below `maxPct` over one second), at most `timeoutMs`.
 * Returns the last busy share seen.
 */
export async function waitForQuiet (maxPct: number, timeoutMs: number, onWait: (pct: number) => void): Promise<number> {
  const deadline = Date.now() + timeoutMs
  let pct = await machineBusyPct(1000)
  while (pct > maxPct && Date.now() < deadline) {
    onWait(pct)
    pct = await machineBusyPct(2000)
  }
  return pct
}
