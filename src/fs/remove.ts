/**
 * Deleting a directory tree of any depth (deeper than PATH_MAX too) that may hold read-only
 * directories, all at once or a few thousand entries at a time, and the short names that reach
 * a deep tree's directories.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import { isRoot } from "../internal/posix.js"

/** Run a synchronous step, its throw as an Error. */
const attempt = <A>(f: () => A): Effect.Effect<A, Error> =>
  Effect.try({ try: f, catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause))) })

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
