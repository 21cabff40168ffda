/**
 * Timing the tool as users run it: one fresh process under /usr/bin/time per sample, the
 * wall clock around the spawn and the peak RSS time reports; medians of several samples.
 */
import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The checkout, and its command as `node bin/blobchain.js` runs it. */
export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const bin = path.join(repo, "bin", "blobchain.js")
export const node = process.execPath

/** One run of one process. */
export interface Sample {
  readonly wall: number
  readonly rssMiB: number
}

/** Several runs of the same case. */
export interface Measured {
  /** median wall seconds */
  readonly wall: number
  /** the largest peak RSS of the runs, MiB */
  readonly rssMiB: number
  readonly runs: number
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

export const summary = (samples: ReadonlyArray<Sample>): Measured => ({
  wall: median(samples.map((s) => s.wall)),
  rssMiB: Math.max(...samples.map((s) => s.rssMiB)),
  runs: samples.length
})

// writeback of an earlier run's output would slow the next one down
const settleDisk = (): void => void spawnSync("sync")

/** One process under /usr/bin/time: wall seconds around the spawn, peak RSS from time's %M. */
export const timed = (cwd: string, command: string, ...args: Array<string>): Sample => {
  settleDisk()
  const start = performance.now()
  const result = spawnSync("/usr/bin/time", ["-f", "@@%e %M", command, ...args], {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 << 20
  })
  const wall = (performance.now() - start) / 1000
  const line = result.stderr.split("\n").filter((l) => l.startsWith("@@")).pop()
  if (result.status !== 0 || line === undefined) {
    throw new Error(`${command} ${args.join(" ")} failed (exit ${result.status}):\n${result.stderr}${result.stdout}`)
  }
  return { wall, rssMiB: Number(line.slice(2).split(" ")[1]) / 1024 }
}

/** `node bin/blobchain.js args…`, timed. */
export const ours = (cwd: string, ...args: Array<string>): Sample => timed(cwd, node, bin, ...args)
