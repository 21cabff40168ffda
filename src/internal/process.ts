/**
 * Child processes, one way for the whole library: each started in a process group of its own,
 * its inputs written and closed, its error streams read into one line, and, on interruption,
 * its whole group killed and waited for, so that no clean-up races a last write; and, under a
 * guard, its whole group killed when this process dies.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import type { Readable, Writable } from "node:stream"

const maxLine = 2000

/**
 * The guard each command runs under (`native/guard.c`, built with the addons by `npm ci`): it
 * kills the command's process group when this process dies, even by SIGKILL, so that nothing it
 * started writes on into a state directory after it. Where it did not build, commands run bare
 * (and may outlive a killed process: their snapshot is swept when the state directory is next opened).
 */
export const guardPath: string = fileURLToPath(new URL("../../build/Release/guard", import.meta.url))

const guard: string | undefined = process.env.BLOBCHAIN_GUARD !== "0" && fs.existsSync(guardPath) ? guardPath : undefined

/**
 * The first line child processes wrote to their error streams and how many more they wrote,
 * kept in bounded memory however much they write. Each stream's lines are kept whole, so two
 * processes writing at once never mix within a line.
 */
export class ErrorLines {
  private first: string | undefined
  private further = 0

  /** Take the lines of `stream`. */
  listen(stream: Readable): void {
    let partial = ""
    stream.setEncoding("utf8")
    stream.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n")
      partial = lines.pop()!.slice(0, maxLine)
      for (const line of lines) this.add(line)
    })
    stream.on("end", () => {
      this.add(partial)
      partial = ""
    })
  }

  private add(line: string): void {
    const text = line.trim()
    if (text === "") return
    if (this.first === undefined) this.first = text.slice(0, maxLine)
    else this.further++
  }

  /** One line: the first written, with the count of the others; `fallback` when there was none. */
  summary(fallback: string): string {
    if (this.first === undefined) return fallback
    return this.further === 0 ? this.first : `${this.first} (and ${this.further} more)`
  }
}

/** One command of a {@link pipeline}. */
export interface Command {
  readonly command: string
  readonly args: ReadonlyArray<string>
}

/** Options of {@link run} and {@link pipeline}. */
export interface RunOptions {
  readonly cwd?: string | undefined
  /** Written to the (first) command's standard input, then closed; none: no standard input. */
  readonly input?: string | undefined
  /** Written to file descriptors 3, 4, … of the (first) command, each then closed. */
  readonly inputs?: ReadonlyArray<string> | undefined
  /**
   * A second error stream on the descriptor after the inputs, read like standard error (a
   * script's background job can report there, so that two jobs' lines never mix).
   */
  readonly secondErrors?: boolean | undefined
}

interface Started {
  readonly child: ChildProcess
  readonly command: string
  code: number | null | undefined
  signal: NodeJS.Signals | null | undefined
  failure: Error | undefined
  closed: boolean
}

/**
 * Run `commands`, each one's standard output into the next one's standard input (the last one's
 * is discarded); succeed when every one exits with 0, else fail with one line: the first error
 * any of them wrote, with how many more followed (a full disk makes a copy complain once per
 * file), or how they exited when they wrote none. A command that cannot start fails the run.
 */
export const pipeline = (
  commands: readonly [Command, ...ReadonlyArray<Command>],
  options: RunOptions = {}
): Effect.Effect<void, Error> =>
  Effect.async<void, Error>((resume) => {
    const inputs = options.inputs ?? []
    const errors = new ErrorLines()
    const last = commands.length - 1
    let ended = false
    let onEnd = () => {}
    const started: Array<Started> = []
    const settle = () => {
      if (ended || started.some((s) => !s.closed)) return
      ended = true
      onEnd()
      const failed = started.find((s) => s.failure !== undefined || s.code !== 0)
      if (failed === undefined) return resume(Effect.void)
      const fallback = started
        .map((s) => s.failure?.message ?? `${s.command} exited with ${s.code ?? s.signal}`)
        .join(", ")
      resume(Effect.fail(new Error(errors.summary(fallback), failed.failure === undefined ? {} : { cause: failed.failure })))
    }
    for (const [i, { args, command }] of commands.entries()) {
      const first = i === 0
      const extra = first ? [...inputs.map(() => "pipe" as const), ...(options.secondErrors ? ["pipe" as const] : [])] : []
      const stdin = first ? (options.input === undefined ? "ignore" : "pipe") : "pipe"
      const child = spawn(guard ?? command, guard === undefined ? args : [String(process.pid), command, ...args], {
        cwd: options.cwd,
        // a process group of its own, so that interruption stops what it started too
        detached: true,
        stdio: [stdin, i === last ? "ignore" : "pipe", "pipe", ...extra]
      })
      const entry: Started = { child, command, code: undefined, signal: undefined, failure: undefined, closed: false }
      started.push(entry)
      if (child.stderr !== null) errors.listen(child.stderr)
      if (first && options.secondErrors) {
        const second = child.stdio[3 + inputs.length] as Readable | null
        if (second !== null) errors.listen(second)
      }
      child.on("error", (error) => {
        entry.failure ??= error
        // no process started: nothing else will come
        if (child.pid === undefined) {
          entry.closed = true
          settle()
        }
      })
      child.on("close", (code, signal) => {
        entry.code = code
        entry.signal = signal
        entry.closed = true
        settle()
      })
      // a pipe closed early by the process (or broken by another's failure) ends in its exit code
      child.stdin?.on("error", () => undefined)
      child.stdout?.on("error", () => undefined)
      if (!first) started[i - 1]!.child.stdout!.pipe(child.stdin!)
      if (first) {
        if (options.input !== undefined) child.stdin!.end(options.input)
        inputs.forEach((input, n) => {
          const stream = child.stdio[3 + n] as Writable | null
          stream?.on("error", () => undefined)
          stream?.end(input)
        })
      }
    }
    return Effect.async<void>((done) => {
      if (ended) return done(Effect.void)
      onEnd = () => done(Effect.void)
      for (const { child } of started) {
        if (child.pid === undefined) continue
        try {
          process.kill(-child.pid, "SIGKILL")
        } catch {
          // already gone
        }
      }
    })
  })

/** Run one command (see {@link pipeline}). */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: RunOptions = {}
): Effect.Effect<void, Error> => pipeline([{ command, args }], options)

/**
 * Run a POSIX shell script with `args` as $1…, `inputs[0]` on its standard input and the next
 * inputs on file descriptors 3, 4, …, and a second error stream on the descriptor after them
 * (see {@link RunOptions.secondErrors}). One process is started from here whatever the script
 * runs: starting one from a large process costs milliseconds, a shell starting small ones far less.
 */
export const runScript = (
  script: string,
  args: ReadonlyArray<string>,
  inputs: ReadonlyArray<string>,
  cwd: string
): Effect.Effect<void, Error> =>
  run("sh", ["-c", script, "sh", ...args], {
    cwd,
    input: inputs.length > 0 ? inputs[0] : undefined,
    inputs: inputs.slice(1),
    secondErrors: true
  })

/** Run `command fixed… args…` in batches of arguments short enough for one command line. */
export const runBatched = (
  command: string,
  fixed: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  cwd: string
): Effect.Effect<void, Error> =>
  Effect.forEach(batches(args), (batch) => run(command, [...fixed, ...batch], { cwd }), { discard: true })

const batches = (args: ReadonlyArray<string>): Array<Array<string>> => {
  const out: Array<Array<string>> = []
  let current: Array<string> = []
  let length = 0
  for (const arg of args) {
    if (current.length > 0 && length + arg.length > 64 * 1024) {
      out.push(current)
      current = []
      length = 0
    }
    current.push(arg)
    length += arg.length + 1
  }
  if (current.length > 0) out.push(current)
  return out
}

/**
 * Run one short command synchronously, for steps inside synchronous code (an applier's node, a
 * directory's times): its standard output, or a throw of one line, the first error it wrote
 * (see {@link ErrorLines}) or how it exited.
 */
export const runSync = (command: string, args: ReadonlyArray<string>): string => {
  const result = spawnSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 20 })
  if (result.error !== undefined) throw result.error
  if (result.status === 0) return result.stdout
  const lines = result.stderr.split("\n").map((line) => line.trim()).filter((line) => line !== "")
  const first = lines[0]?.slice(0, maxLine) ?? `${command} exited with ${result.status ?? result.signal}`
  throw new Error(lines.length > 1 ? `${first} (and ${lines.length - 1} more)` : first)
}

/**
 * Whiteout devices (0/0 character devices) at each of the paths `$1…`, in one shell: a process
 * per whiteout costs more than the work.
 */
export const mknodEach = `for p do mknod -- "$p" c 0 0 || exit 1; done`
