/**
 * Snapshot directory trees on disk: copying a parent's tree with everything a layer diff looks
 * at kept intact (or sharing its files by hard links), measuring a tree's disk use, and deleting
 * a tree of any depth that may hold read-only dirs.
 */
import { Effect } from "effect"
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import type { Readable, Writable } from "node:stream"
import { isRoot, major, minor } from "../internal/posix.js"

/**
 * How a tree is copied.
 * - `cp`: GNU `cp -a --reflink=auto`, which keeps nanosecond times and xattrs (Node's
 *   `utimes` rounds to microseconds and cannot read xattrs) and clones where it can;
 * - `walk`: a synchronous walk with Node's fs calls, for systems without GNU cp: times kept
 *   to the microsecond, no xattrs.
 */
export type CopyEngine = "cp" | "walk"

let gnuCp: boolean | undefined

/** `true` when `cp` is GNU coreutils' (checked once per process). */
export const hasGnuCp = (): boolean => {
  if (gnuCp === undefined) {
    try {
      gnuCp = execFileSync("cp", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
        .includes("GNU coreutils")
    } catch {
      gnuCp = false
    }
  }
  return gnuCp
}

/** The engine `choice` stands for on this machine. */
export const resolveEngine = (choice: CopyEngine | "auto"): CopyEngine =>
  choice === "auto" ? (hasGnuCp() ? "cp" : "walk") : choice

/**
 * Copy the tree at `from` to `to` (which must not exist) with GNU cp. The callback style lets
 * the caller kill the copy when it is interrupted. A failure is one line: cp's first complaint
 * and how many more it made (a full disk makes it complain once per file).
 */
export const copyWithCp = (
  from: string,
  to: string,
  signal: AbortSignal,
  done: (error: Error | undefined) => void
): void => {
  const child = spawn("cp", ["-a", "--reflink=auto", "--no-target-directory", "--", from, to], {
    signal,
    stdio: ["ignore", "ignore", "pipe"]
  })
  whenExited(child, "cp", done)
}

const maxLine = 2000

/**
 * The first line a child process wrote to its error streams and how many more it wrote, kept in
 * bounded memory however much it writes. Each stream's lines are kept whole, so two processes
 * writing at once never mix within a line.
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

/**
 * Call `done` once `child` (started as `command`) has exited and its error streams are read
 * (standard error and `moreErrors`): with nothing on success, else with one line from
 * {@link ErrorLines}.
 */
const whenExited = (
  child: ChildProcess,
  command: string,
  done: (error: Error | undefined) => void,
  moreErrors: ReadonlyArray<Readable> = []
): void => {
  const errors = new ErrorLines()
  for (const stream of child.stderr === null ? moreErrors : [child.stderr, ...moreErrors]) errors.listen(stream)
  let ended = false
  let failure: Error | undefined
  const end = (error: Error | undefined) => {
    if (ended) return
    ended = true
    done(error)
  }
  child.on("error", (error) => {
    failure ??= error
    // no process started: nothing else will come
    if (child.pid === undefined) end(error)
  })
  child.on("close", (code, signal) => {
    if (code === 0) return end(undefined)
    const fallback = failure?.message ?? `${command} exited with ${code ?? signal}`
    end(new Error(errors.summary(fallback), failure === undefined ? {} : { cause: failure }))
  })
}

/** Whether this process runs as root (owners can be set, read-only directories entered). */

// Linux's dev_t encoding (glibc gnu_dev_major / gnu_dev_minor)

/**
 * Seconds for `utimes` from nanoseconds. libuv truncates to whole microseconds after a float
 * round trip, so aim at the middle of the microsecond to land on the intended one.
 */
const seconds = (ns: bigint): number => Number(ns / 1000n) / 1e6 + 5e-7

/**
 * Give `path` (not following a symlink there) these times to the nanosecond: with `lutimes` when
 * they are whole microseconds (all that libuv passes on; every time Node set is one), else with
 * `touch`, the only tool that sets nanoseconds.
 */
export const setTimesNs = (path: string, atimeNs: bigint, mtimeNs: bigint): void => {
  if (atimeNs % 1000n === 0n && mtimeNs % 1000n === 0n) {
    fs.lutimesSync(path, seconds(atimeNs), seconds(mtimeNs))
    return
  }
  const at = (ns: bigint) => `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`
  execFileSync("touch", ["-h", "-a", "-d", at(atimeNs), "--", path], { stdio: "pipe" })
  execFileSync("touch", ["-h", "-m", "-d", at(mtimeNs), "--", path], { stdio: "pipe" })
}

const setMetadata = (path: string, stat: fs.BigIntStats): void => {
  // chown first: it clears setuid/setgid bits that chmod then restores
  if (isRoot()) fs.lchownSync(path, Number(stat.uid), Number(stat.gid))
  if (!stat.isSymbolicLink()) fs.chmodSync(path, Number(stat.mode & 0o7777n))
  fs.lutimesSync(path, seconds(stat.atimeNs), seconds(stat.mtimeNs))
}

const copyEntry = (from: string, to: string, stat: fs.BigIntStats, links: Map<string, string> | "share"): void => {
  if (stat.isDirectory()) {
    // writable while it is filled; its own mode and times are set once its children are in
    fs.mkdirSync(to, { mode: 0o700 })
    for (const name of fs.readdirSync(from)) {
      const child = NodePath.join(from, name)
      copyEntry(child, NodePath.join(to, name), fs.lstatSync(child, { bigint: true }), links)
    }
    setMetadata(to, stat)
    return
  }
  if (links === "share") {
    // link(2) does not follow a symbolic link: the link itself is shared
    fs.linkSync(from, to)
    return
  }
  if (stat.nlink > 1n) {
    const inode = `${stat.dev}:${stat.ino}`
    const first = links.get(inode)
    if (first !== undefined) {
      fs.linkSync(first, to)
      return
    }
    links.set(inode, to)
  }
  if (stat.isFile()) {
    fs.copyFileSync(from, to, fs.constants.COPYFILE_FICLONE)
  } else if (stat.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(from), to)
  } else if (stat.isFIFO()) {
    // Node has no mknod: the tools do it
    execFileSync("mkfifo", ["--", to], { stdio: "ignore" })
  } else if (stat.isCharacterDevice() || stat.isBlockDevice()) {
    const type = stat.isCharacterDevice() ? "c" : "b"
    execFileSync("mknod", ["--", to, type, String(major(stat.rdev)), String(minor(stat.rdev))], { stdio: "ignore" })
  } else {
    // a socket is a live endpoint: no layer records one, so no copy needs it
    return
  }
  setMetadata(to, stat)
}

/** Copy the tree at `from` to `to` (which must not exist) with Node's fs calls. */
export const copyWithWalk = (from: string, to: string): void => {
  copyEntry(from, to, fs.lstatSync(from, { bigint: true }), new Map())
}

/**
 * Share the tree at `from` as `to` (which must not exist) with Node's fs calls: every directory
 * made anew with the same owner, mode and times (to the microsecond), every other entry a hard
 * link to the same inode. Only for trees whose files are then replaced, never written into.
 */
export const linkWithWalk = (from: string, to: string): void => {
  copyEntry(from, to, fs.lstatSync(from, { bigint: true }), "share")
}

/**
 * Relative `paths` dealt to two lanes for {@link inTwoLanes}, NUL-terminated: the paths under
 * one first component all in the same lane, so that no directory is made by both, and first
 * components to each lane in turn.
 */
export const twoLanes = (paths: Iterable<string>): [string, string] => {
  const lanes: [string, string] = ["", ""]
  const laneOf = new Map<string, 0 | 1>()
  for (const path of paths) {
    const slash = path.indexOf("/")
    const first = slash < 0 ? path : path.slice(0, slash)
    let lane = laneOf.get(first)
    if (lane === undefined) laneOf.set(first, lane = laneOf.size % 2 === 0 ? 0 : 1)
    lanes[lane] += `${path}\0`
  }
  return lanes
}

/**
 * Shell lines running `command -- paths…` over the paths of both {@link twoLanes} at once, read
 * from file descriptors 3 and 4; they fail (under `set -e`) when either lane does. Creating
 * files and links is system calls, which two cores do nearly twice as fast. The lane in the
 * background reports errors on descriptor 5 ({@link runScript}'s second error stream with
 * three inputs), so that the two lanes' complaints never mix within a line.
 */
export const inTwoLanes = (command: string): string => `xargs -0 -r ${command} -- <&3 2>&5 & lane=$!
xargs -0 -r ${command} -- <&4
wait $lane`

/**
 * {@link linkWithWalk} with GNU `cp -al` (nanosecond directory times), its top-level entries
 * split between two processes (linking is all system calls: a tree of many files links nearly
 * twice as fast on two cores), then the root given `from`'s owner, mode and times. One shell
 * runs it all: each process started from a large one costs milliseconds.
 */
export const linkWithCp = (from: string, to: string): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const names = yield* attempt(() => {
      // writable while it is filled; its own mode and times are set last
      fs.mkdirSync(to, { mode: 0o700 })
      return fs.readdirSync(from)
    })
    yield* runScript(linkScript, [to, isRoot() ? "root" : ""], ["", ...twoLanes(names)], from)
  })

// cwd: the tree to share; $1: the new root; fds 3 and 4: top-level names
const linkScript = `set -e
${inTwoLanes(`cp -al -t "$1"`)}
if [ -n "$2" ]; then chown --reference=. -- "$1"; fi
chmod --reference=. -- "$1"
touch -h -r . -- "$1"
`

/**
 * Run a POSIX shell script with `args` as $1…, in `cwd`, with `inputs[0]` on its standard input
 * and the next inputs on file descriptors 3, 4, …, and a second error stream on the descriptor
 * after them; fails with one line: the first error written, and how many more followed. One
 * process is started from here whatever the script runs: starting one from a large process costs
 * milliseconds, a shell starting small ones far less. Killed on interruption.
 */
export const runScript = (
  script: string,
  args: ReadonlyArray<string>,
  inputs: ReadonlyArray<string>,
  cwd: string
): Effect.Effect<void, Error> =>
  Effect.async<void, Error>((resume) => {
    const extra = inputs.slice(1).map(() => "pipe" as const)
    // a process group of its own, so that interruption stops what the shell started too
    const child = spawn("sh", ["-c", script, "sh", ...args], {
      cwd,
      detached: true,
      stdio: [inputs.length > 0 ? "pipe" : "ignore", "ignore", "pipe", ...extra, "pipe"]
    })
    let ended = false
    let onEnd = () => {}
    const secondErrors = child.stdio[3 + extra.length] as Readable | null
    whenExited(child, "sh", (error) => {
      ended = true
      onEnd()
      resume(error === undefined ? Effect.void : Effect.fail(error))
    }, secondErrors === null ? [] : [secondErrors])
    // a pipe the shell closed early ends in its exit code
    inputs.forEach((input, i) => {
      const stream = child.stdio[i === 0 ? 0 : i + 2] as Writable | null
      stream?.on("error", () => undefined)
      stream?.end(input)
    })
    // on interruption, kill the group and wait for it, so that no clean-up races its last writes
    return Effect.async<void>((done) => {
      if (ended) return done(Effect.void)
      onEnd = () => done(Effect.void)
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // already gone
      }
    })
  })

/** Run a synchronous step, its throw as an Error. */
export const attempt = <A>(f: () => A): Effect.Effect<A, Error> =>
  Effect.try({ try: f, catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause))) })

/**
 * Give directory `to` the owner (as root), mode and nanosecond times of `from`: the times with
 * `touch -r`, the only tool that copies them whole (Node's `utimes` rounds to microseconds).
 */
export const copyRootMetadata = (from: string, to: string): Effect.Effect<void, Error> =>
  attempt(() => {
    const stat = fs.lstatSync(from)
    if (isRoot()) fs.lchownSync(to, stat.uid, stat.gid)
    fs.chmodSync(to, stat.mode & 0o7777)
  }).pipe(
    Effect.zipRight(Effect.async<void, Error>((resume, signal) => {
      execFile("touch", ["-h", "-r", from, "--", to], { signal }, (error, _stdout, stderr) =>
        resume(error === null ? Effect.void : Effect.fail(new Error(`times: ${stderr.trim() || error.message}`, { cause: error }))))
    }))
  )

/**
 * Run `command args…` in batches of arguments short enough for one command line; killed on
 * interruption. A failure is one line: the first error written, and how many more followed.
 */
export const runBatched = (
  command: string,
  fixed: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  cwd: string
): Effect.Effect<void, Error> =>
  Effect.forEach(batches(args), (batch) =>
    Effect.async<void, Error>((resume, signal) => {
      const child = spawn(command, [...fixed, ...batch], { cwd, signal, stdio: ["ignore", "ignore", "pipe"] })
      whenExited(child, command, (error) => resume(error === undefined ? Effect.void : Effect.fail(error)))
    }), { discard: true })

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

/** Bytes on disk (allocated blocks) and inodes of a tree, each hard-linked inode counted once. */
export const usage = (root: string): { readonly size: number; readonly inodes: number } => {
  const seen = new Set<string>()
  let size = 0n
  const visit = (path: string): void => {
    const stat = fs.lstatSync(path, { bigint: true })
    const inode = `${stat.dev}:${stat.ino}`
    if (!seen.has(inode)) {
      seen.add(inode)
      size += stat.blocks * 512n
    }
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(path)) visit(NodePath.join(path, name))
    }
  }
  visit(root)
  return { size: Number(size), inodes: seen.size }
}

/**
 * Paths longer than this many bytes reach their directory through a descriptor instead (on
 * Linux, by /proc): the kernel refuses paths over PATH_MAX (4096 bytes), and a tree may be
 * deeper than that. Short enough that a path's lookup never walks many components: a deep tree
 * is then linear in its depth, not quadratic.
 */
const longPath = process.platform === "linux" ? 256 : Infinity

// Linux's O_PATH: a descriptor that only names a directory, so one without read permission
// can be held too; elsewhere a plain read-only one
const pathOnly = process.platform === "linux" ? 0o10000000 : fs.constants.O_RDONLY

/** A directory named by a short path, and the descriptor behind that path if one was opened. */
export interface ShortDir {
  /** `path` itself when short, else `/proc/<pid>/fd/<n>`, which child processes can use too. */
  readonly path: string
  readonly fd: number | undefined
}

/**
 * A short name for the directory at `path`: the path itself, or, once it is long, a descriptor
 * opened on it without following a symlink at its last component (the caller closes it).
 * `path` must itself be short enough for the kernel: a parent's short name and one component.
 */
export const shortDir = (path: string): ShortDir => {
  if (Buffer.byteLength(path) <= longPath) return { path, fd: undefined }
  const fd = fs.openSync(path, pathOnly | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW)
  return { path: `/proc/${process.pid}/fd/${fd}`, fd }
}

const ignoreMissing = (f: () => void): void => {
  try {
    f()
  } catch (error) {
    if (!(error instanceof Error && "code" in error && error.code === "ENOENT")) throw error
  }
}

interface Frame {
  /** The directory's path through its parent's short name: what removes it once it is empty. */
  readonly path: string
  /** Its own short name, through which its entries are reached. */
  readonly dir: ShortDir
  /** Its entries not yet removed. */
  readonly names: Array<string>
}

/**
 * The deletion of one tree, a bounded number of entries at a time: a stack of the directories
 * being emptied, never recursion, so any depth; each directory reached by a short name.
 */
class Removal {
  private readonly stack: Array<Frame> = []
  private started = false

  constructor(private readonly root: string) {}

  /** Remove up to `budget` entries; `true` once the tree is gone. */
  step(budget: number): boolean {
    if (!this.started) {
      this.started = true
      // lstat, not exists: a dangling symlink exists as far as removal is concerned
      const stat = fs.lstatSync(this.root, { throwIfNoEntry: false })
      if (stat === undefined) return true
      if (!stat.isDirectory()) {
        ignoreMissing(() => fs.unlinkSync(this.root))
        return true
      }
      this.enter(this.root, stat)
    }
    for (let n = 0; n < budget; n++) {
      const top = this.stack[this.stack.length - 1]
      if (top === undefined) return true
      const name = top.names.pop()
      if (name === undefined) {
        this.stack.pop()
        if (top.dir.fd !== undefined) fs.closeSync(top.dir.fd)
        ignoreMissing(() => fs.rmdirSync(top.path))
        continue
      }
      const child = `${top.dir.path}/${name}`
      const stat = fs.lstatSync(child, { throwIfNoEntry: false })
      if (stat === undefined) continue
      if (stat.isDirectory()) this.enter(child, stat)
      else ignoreMissing(() => fs.unlinkSync(child))
    }
    return this.stack.length === 0
  }

  private enter(path: string, stat: fs.Stats): void {
    // without write and search permission on a directory its entries cannot be listed or
    // unlinked; root needs neither
    if (!isRoot() && (stat.mode & 0o700) !== 0o700) fs.chmodSync(path, (stat.mode & 0o7777) | 0o700)
    const dir = shortDir(path)
    try {
      this.stack.push({ path, dir, names: fs.readdirSync(dir.path) })
    } catch (error) {
      if (dir.fd !== undefined) fs.closeSync(dir.fd)
      throw error
    }
  }

  /** Close the descriptors an unfinished removal holds. */
  close(): void {
    for (const frame of this.stack) if (frame.dir.fd !== undefined) fs.closeSync(frame.dir.fd)
    this.stack.length = 0
  }
}

/**
 * Delete a tree of any depth, read-only directories included; a missing tree is fine. All at
 * once: for trees known to be small, or inside synchronous work; see {@link removeTreeInSteps}.
 */
export const removeTree = (path: string): void => {
  const removal = new Removal(path)
  try {
    removal.step(Infinity)
  } finally {
    removal.close()
  }
}

// entries removed between two turns of the event loop: a few milliseconds of system calls
const entriesPerStep = 2000

const nextTurn = Effect.async<void>((resume) => {
  const timer = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(timer))
})

/**
 * {@link removeTree} a few thousand entries at a time, the event loop free between them: a
 * snapshot's tree may hold millions of entries. Interruption stops it between steps.
 */
export const removeTreeInSteps = (path: string): Effect.Effect<void, Error> =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Removal(path)),
    (removal) =>
      Effect.gen(function*() {
        while (!(yield* attempt(() => removal.step(entriesPerStep)))) yield* nextTurn
      }),
    (removal) => Effect.sync(() => removal.close())
  )
