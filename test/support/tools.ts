/**
 * Real tools the tests validate against (umoci, skopeo, …) and running the built CLI.
 * A missing tool skips its tests on a developer's machine and fails them under CI.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/** `true` when `name` runs; under CI a missing tool is an error. */
export const haveTool = (name: string): boolean => {
  const found = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).status === 0
  if (!found && process.env["CI"] === "true") {
    throw new Error(`${name} is required under CI (.ci/run installs it)`)
  }
  if (!found) console.warn(`skipping tests that need ${name}: not installed (apt-get install -y ${name})`)
  return found
}

/** Run a tool, returning its stdout; throws with its stderr when it fails. */
export const run = (command: string, args: ReadonlyArray<string>, cwd?: string): string =>
  execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...(cwd === undefined ? {} : { cwd }), maxBuffer: 64 << 20 })

const repo = path.resolve(import.meta.dirname, "../..")
const bin = path.join(repo, "bin", "blobchain.js")

/** What a run of the CLI printed and how it ended. */
export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Options of {@link runChild}. */
export interface ChildOptions {
  readonly cwd?: string
  readonly env?: NodeJS.ProcessEnv
  /** Kill it with SIGKILL after this many milliseconds, unless it ends first. */
  readonly killAfterMs?: number
}

/**
 * Run `command args…` as a child the event loop waits on, collecting what it printed; with
 * `killAfterMs`, also whether the kill came first (its code is then -1).
 */
export const runChild = (
  command: string,
  args: ReadonlyArray<string>,
  options: ChildOptions = {}
): Promise<CliResult & { readonly killed?: boolean }> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repo,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    let killed = false
    const timer = options.killAfterMs === undefined ? undefined : setTimeout(() => {
      killed = child.exitCode === null && child.signalCode === null
      child.kill("SIGKILL")
    }, options.killAfterMs)
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk))
    child.on("error", reject)
    child.on("close", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer)
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        // said only when a kill was asked for: a plain run's result is what it printed and its code
        ...(options.killAfterMs === undefined ? {} : { killed: killed && signal === "SIGKILL" })
      })
    })
  })

/**
 * Run the built `blobchain` with `args`; `npm test` builds dist/ before the suite. The child runs
 * while this process's event loop stays free, so the test runner's own messages are answered.
 */
export const blobchain = (
  args: ReadonlyArray<string>,
  options: ChildOptions = {}
): Promise<CliResult & { readonly killed?: boolean }> =>
  fs.existsSync(path.join(repo, "dist", "cli", "main.js"))
    ? runChild(process.execPath, [bin, ...args], options)
    : Promise.reject(new Error("dist/ is missing: run `npm run build` (npm test does)"))
