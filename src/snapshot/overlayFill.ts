/**
 * Filling an active overlay snapshot from a directory: only what differs from the layers below
 * is written into its upper directory, so its merged view becomes equal to the directory.
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { Effect } from "effect"
import { type Mount, writableLayersOf } from "../Mount.js"
import { SnapshotterError } from "../Snapshotter.js"
import { changes } from "../fs/changes.js"
import { isWhiteoutDevice, lookup, type Tree } from "../fs/tree.js"
import { isRoot, parentOf } from "../internal/posix.js"
import { removeTree } from "../fs/remove.js"
import { mknodEach, pipeline, runBatched } from "../internal/process.js"

/** What the upper directory needs, gathered in one pass over the changes, then carried out in batches. */
interface Plan {
  /** Paths (relative) copied whole from the source with `cp -a`, new subtrees included. */
  readonly copies: Array<string>
  /** Whiteouts to create as 0/0 character devices (absolute paths). */
  readonly devices: Array<string>
  /** Names copied as separate files that must end up as one hard-linked inode: [first, other]. */
  readonly links: Array<readonly [string, string]>
  /** Directories made here that merge with the ones below; their metadata is set last, deepest first. */
  readonly dirs: Array<string>
}


const baseOf = (path: string): string => path.slice(path.lastIndexOf("/") + 1)

/**
 * Give the directories `dirs` (relative; "" is the root) under `root` the owner, mode and
 * nanosecond times of the same directories under `sourceDir`, in two processes whatever their
 * number: GNU tar archives them (POSIX format: nanosecond times) and extracts them over the
 * existing ones, which it does metadata only, the deepest last-written directory first.
 */
const copyDirectoryMetadata = (sourceDir: string, root: string, dirs: ReadonlyArray<string>): Effect.Effect<void, Error> =>
  pipeline([
    { command: "tar", args: ["-c", "--format=posix", "--no-recursion", "-C", sourceDir, "--null", "-T", "-"] },
    { command: "tar", args: ["-x", "-p", isRoot() ? "--same-owner" : "--no-same-owner", "-C", root] }
  ], { input: dirs.map((dir) => `${dir === "" ? "." : dir}\0`).join("") })

/**
 * The last step of a fill: join hard-link groups that `cp` runs split, then give every
 * touched directory (and the root) the source's owner, mode and nanosecond times.
 */
export const settle = (
  root: string,
  sourceDir: string,
  dirs: Iterable<string>,
  links: ReadonlyArray<readonly [string, string]>
): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const touched = new Set(dirs)
    const io = <A>(f: () => A) =>
      Effect.try({ try: f, catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause))) })
    yield* io(() => {
      for (const [first, other] of links) {
        const a = fs.lstatSync(NodePath.join(root, first))
        const b = fs.lstatSync(NodePath.join(root, other))
        if (a.ino === b.ino) continue
        fs.unlinkSync(NodePath.join(root, other))
        fs.linkSync(NodePath.join(root, first), NodePath.join(root, other))
        touched.add(parentOf(other))
      }
    })
    touched.add("")
    yield* copyDirectoryMetadata(sourceDir, root, [...touched].sort()).pipe(
      Effect.mapError((error) => new Error(`directory metadata: ${error.message}`, { cause: error }))
    )
  })

/** Options of {@link fillOverlay}. */
export interface FillOptions {
  /**
   * How deletions are written: `device` (0/0 character devices, what the kernel honours; needs
   * root) or `file` (`.wh.<name>` files, read only by the user-space merge). Default: `device`
   * when the process is root, else `file`.
   */
  readonly whiteouts?: "device" | "file"
}

/**
 * Make the merged view of the active snapshot mounted by `mounts` equal `sourceDir`, writing
 * only the differences into its upper directory (which is emptied first): new and changed
 * entries copied with `cp -a --reflink=auto` (modes, owners, nanosecond times, hard links kept),
 * deleted names whited out, changed directories made in the upper directory over the ones below.
 *
 * "Changed" is the differ's rule (mode, owner, rdev, size, nanosecond mtime, link target,
 * hard-link group; contents when both times lack nanoseconds). Whiteouts: see {@link FillOptions}.
 * No opaque markers are written (the kernel reads them only as an xattr, which Node cannot
 * read back): a directory over a non-directory never merges with it, and a directory that
 * drops lower names whites out each of them. A plain (bind) mount is filled as a tree with
 * nothing below it.
 */
export const fillOverlay = (
  mounts: ReadonlyArray<Mount>,
  sourceDir: string,
  options: FillOptions = {}
): Effect.Effect<void, SnapshotterError> =>
  Effect.gen(function*() {
    const fail = (reason: string, cause?: unknown) =>
      new SnapshotterError({ op: "fill", key: sourceDir, reason, ...(cause === undefined ? {} : { cause }) })
    const io = <A>(f: () => A) =>
      Effect.try({ try: f, catch: (cause) => fail(cause instanceof Error ? cause.message : String(cause), cause) })
    const layers = writableLayersOf(mounts)
    if (typeof layers === "string") return yield* fail(layers)
    const { lowers, upper } = layers
    const lower: Tree = { root: lowers, overlay: true }
    const source: Tree = { root: [sourceDir], overlay: false }
    const asRoot = isRoot()
    const devices = (options.whiteouts ?? (asRoot ? "device" : "file")) === "device"

    yield* io(() => {
      for (const name of fs.readdirSync(upper)) removeTree(NodePath.join(upper, name))
    })

    const plan: Plan = { copies: [], devices: [], links: [], dirs: [] }
    // the lower directories merged at each directory made here, to tell merging ones from new ones
    const lowerDirsOf = new Map<string, ReadonlyArray<string>>([["", lowers]])
    const firstOfInode = new Map<string, string>()
    let copiedWhole: string | undefined
    let unrepresentable: string | undefined
    const iterator = changes(lower, source)[Symbol.iterator]()

    const planSome = () =>
      io((): boolean => {
        for (;;) {
          const next = iterator.next()
          if (next.done === true) return true
          const change = next.value
          switch (change._tag) {
            case "Tick":
              return false
            case "Lookup":
              // no content-hash index here: the walk reads what it must compare
              continue
            case "Skipped":
              // a socket: no snapshot keeps one, as no layer can
              continue
            case "Opaque":
              // the directory sits on a non-directory below: it is copied whole and merges with nothing
              continue
            case "Whiteout": {
              const at = NodePath.join(upper, parentOf(change.path))
              if (devices) plan.devices.push(NodePath.join(at, baseOf(change.path)))
              else {
                const marker = NodePath.join(at, `.wh.${baseOf(change.path)}`)
                fs.writeFileSync(marker, "")
                fs.lutimesSync(marker, 0, 0)
              }
              continue
            }
            case "Entry": {
              const { node, path } = change
              // the root's metadata is set with the directories' at the end, whatever changed
              if (path === "") continue
              if (node.name.startsWith(".wh.") || isWhiteoutDevice(node.stat)) {
                unrepresentable = path
                return true
              }
              if (node.stat.isFile() && node.stat.nlink > 1n) {
                const inode = `${node.stat.dev}:${node.stat.ino}`
                const first = firstOfInode.get(inode)
                if (first === undefined) firstOfInode.set(inode, path)
                else plan.links.push([first, path])
              }
              if (copiedWhole !== undefined && path.startsWith(copiedWhole)) continue
              copiedWhole = undefined
              if (node.stat.isDirectory()) {
                const parentDirs = lowerDirsOf.get(parentOf(path)) ?? []
                const below = parentDirs.length === 0 ? undefined : lookup(lower, parentDirs, node.name)
                if (below?.stat.isDirectory() === true) {
                  fs.mkdirSync(NodePath.join(upper, path), { mode: 0o700 })
                  lowerDirsOf.set(path, below.dirs)
                  plan.dirs.push(path)
                  continue
                }
                copiedWhole = `${path}/`
              }
              plan.copies.push(path)
              continue
            }
          }
        }
      })

    while (!(yield* planSome())) yield* Effect.yieldNow()
    if (unrepresentable !== undefined) {
      return yield* fail(`${unrepresentable}: an overlay layer cannot hold this entry (it reads as a whiteout)`)
    }

    const step = (what: string) => Effect.mapError((error: Error) => fail(`${what}: ${error.message}`, error))
    yield* runBatched("cp", ["-a", "--reflink=auto", "--parents", "-t", upper, "--"], plan.copies, sourceDir).pipe(
      step("copy")
    )
    yield* runBatched("sh", ["-c", mknodEach, "sh"], plan.devices, upper).pipe(step("whiteout"))
    // a whiteout's time is the one its layer entry gets (0), not the moment it was made: an
    // upper directory is then the same whenever it is written
    yield* io(() => {
      for (const device of plan.devices) fs.lutimesSync(device, 0, 0)
    })
    yield* settle(upper, sourceDir, plan.dirs, plan.links).pipe(
      Effect.mapError((error) => fail(error.message, error))
    )
  }).pipe(Effect.withSpan("Snapshotter.fillOverlay", { attributes: { sourceDir } }))
