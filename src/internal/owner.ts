/**
 * The process that owns a lock or a lease, told apart from a later process the kernel gave the
 * same pid: its pid and its start time (clock ticks since boot, from /proc).
 */
import * as fs from "node:fs"

/** When process `pid` started, from `/proc/PID/stat`; `""` where /proc cannot say. */
export const processStarted = (pid: number): string => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // the command name may hold spaces and parentheses: the fields start after the last ")"
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? ""
  } catch {
    return ""
  }
}

/** This process, as a lock or lease names it. */
export const self = { pid: process.pid, started: processStarted(process.pid) } as const

/**
 * Whether the process named by `pid` and `started` runs: the pid exists (as another user's too)
 * and, where a start time was recorded and /proc tells, it started then.
 */
export const isRunning = (pid: number, started: string): boolean => {
  try {
    process.kill(pid, 0)
  } catch (cause) {
    // EPERM: it runs, as another user
    if ((cause as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  return started === "" || processStarted(pid) === started
}

/** A process as a lock or an owner file names it. */
export interface Owner {
  readonly pid: number
  /** Its start time; `""` when not recorded (a file written before start times were). */
  readonly started: string
}

/** The line naming this process in a lock or owner file: `PID STARTED`. */
export const selfLine = `${self.pid} ${self.started}\n`

/** The process a lock or owner file names, or `undefined` when it names none. */
export const parseOwner = (text: string): Owner | undefined => {
  const [pidText = "", started = ""] = text.trim().split(/\s+/)
  const pid = Number.parseInt(pidText, 10)
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, started } : undefined
}
