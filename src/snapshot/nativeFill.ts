/**
 * Filling an active native snapshot (a full copy of its parent) from a directory: only what
 * differs is removed and copied, so a small change costs little beyond the parent's copy.
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { Effect } from "effect"
import { SnapshotterError } from "../Snapshotter.js"
import { changes } from "../fs/changes.js"
import type { Tree } from "../fs/tree.js"
import { isRoot, parentOf } from "../internal/posix.js"
import { settle } from "./overlayFill.js"
import { inTwoLanes, twoLanes } from "../fs/copy.js"
import { removeTree } from "../fs/remove.js"
import { runScript } from "../internal/process.js"

// cwd: the source; $1: the snapshot's tree; fds 3 and 4: paths to copy. With $2 (tar's owner
// option), the directories named on stdin then take the source's owner, mode and nanosecond
// times: GNU tar archives them (POSIX format) and extracts them over the existing ones, metadata
// only, deepest last. A failed archive kills the script.
const fillScript = `set -e
${inTwoLanes(`cp -a --reflink=auto --parents -t "$1"`)}
if [ -n "$2" ]; then
  { tar -c --format=posix --no-recursion --null -T - || kill $$; } | tar -x -p "$2" -C "$1"
fi
`

/**
 * Make the tree at `dir` equal `sourceDir` in place: deleted names removed, new and changed
 * entries replaced by `cp -a --reflink=auto` copies (modes, owners, nanosecond times, hard
 * links kept), and every directory touched on the way given the source's mode, owner and
 * times last, deepest first. "Changed" is the differ's rule, so a diff of the result against
 * the parent sees exactly the source's changes.
 */
export const fillNative = (dir: string, sourceDir: string): Effect.Effect<void, SnapshotterError> =>
  Effect.gen(function*() {
    const fail = (reason: string, cause?: unknown) =>
      new SnapshotterError({ op: "fill", key: sourceDir, reason, ...(cause === undefined ? {} : { cause }) })
    const io = <A>(f: () => A) =>
      Effect.try({ try: f, catch: (cause) => fail(cause instanceof Error ? cause.message : String(cause), cause) })
    const current: Tree = { root: [dir], overlay: false }
    const source: Tree = { root: [sourceDir], overlay: false }
    const copies: Array<string> = []
    const links: Array<readonly [string, string]> = []
    const dirs = new Set<string>([""])
    const firstOfInode = new Map<string, string>()
    let copiedWhole: string | undefined
    const iterator = changes(current, source)[Symbol.iterator]()

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
              continue
            case "Whiteout":
              removeTree(NodePath.join(dir, change.path))
              dirs.add(parentOf(change.path))
              continue
            case "Entry": {
              const { node, path } = change
              // the root's metadata is set with the directories' at the end, whatever changed
              if (path === "") continue
              if (node.stat.isFile() && node.stat.nlink > 1n) {
                const inode = `${node.stat.dev}:${node.stat.ino}`
                const first = firstOfInode.get(inode)
                if (first === undefined) firstOfInode.set(inode, path)
                else links.push([first, path])
              }
              if (copiedWhole !== undefined && path.startsWith(copiedWhole)) continue
              copiedWhole = undefined
              const target = NodePath.join(dir, path)
              const existing = fs.lstatSync(target, { throwIfNoEntry: false })
              dirs.add(parentOf(path))
              if (node.stat.isDirectory() && existing?.isDirectory() === true) {
                // kept: what changed inside comes as entries of its own; its metadata is set last
                dirs.add(path)
                continue
              }
              if (existing !== undefined) removeTree(target)
              if (node.stat.isDirectory()) copiedWhole = `${path}/`
              copies.push(path)
              continue
            }
          }
        }
      })

    while (!(yield* planSome())) yield* Effect.yieldNow()
    const step = (what: string) => Effect.mapError((error: Error) => fail(`${what}: ${error.message}`, error))
    const lanes = twoLanes(copies)
    if (links.length === 0) {
      // one shell copies, then sets the directories' metadata
      const names = [...dirs].sort().map((d) => `${d === "" ? "." : d}\0`).join("")
      yield* runScript(fillScript, [dir, isRoot() ? "--same-owner" : "--no-same-owner"], [names, ...lanes], sourceDir)
        .pipe(step("copy"))
      return
    }
    yield* runScript(fillScript, [dir, ""], ["", ...lanes], sourceDir).pipe(step("copy"))
    yield* settle(dir, sourceDir, dirs, links).pipe(Effect.mapError((error) => fail(error.message, error)))
  }).pipe(Effect.withSpan("Snapshotter.fillNative", { attributes: { dir, sourceDir } }))
