/**
 * A directory put at a path inside an image's tree (`--layer SRC:DEST`), confined to it: DEST
 * is resolved in the merged tree as if it were `/`, and the directories on its path are made in
 * a directory of the put's own (see Source.putRef), without following any symlink the tree holds.
 */
import * as fs from "node:fs"
import { setTimesNs } from "../fs/copy.js"
import { lookup, type Node, type Tree } from "../fs/tree.js"

/** Symlinks followed while resolving one path, as Linux allows (`ELOOP` past it). */
const maxLinks = 40

/** DEST resolved inside the tree: real directories or missing names, no symlink among them. */
export interface Resolved {
  readonly parts: ReadonlyArray<string>
}

/**
 * Resolve `dest` (an absolute or relative path inside the image) in `tree` as if its root were
 * `/`: `..` stops at the root, an absolute symlink starts again from it, a relative one from its
 * directory. The answer names real directories and names not there yet; a component that is a
 * file, a device or a loop of symlinks is the reason it cannot be a directory.
 */
export const resolve = (tree: Tree, dest: string): Resolved | string => {
  const done: Array<string> = []
  // the merged directories of each component of `done` ([] once a name is not there), root first
  let dirs: Array<ReadonlyArray<string>> = [tree.root]
  const todo = dest.split("/")
  let links = 0
  while (todo.length > 0) {
    const part = todo.shift()!
    if (part === "" || part === ".") continue
    if (part === "..") {
      if (done.length > 0) {
        done.pop()
        dirs.pop()
      }
      continue
    }
    const here = dirs[dirs.length - 1]!
    const node: Node | undefined = here.length === 0 ? undefined : lookup(tree, here, part)
    if (node === undefined) {
      done.push(part)
      dirs.push([])
      continue
    }
    if (node.stat.isSymbolicLink()) {
      if (++links > maxLinks) return `too many levels of symbolic links at /${[...done, part].join("/")}`
      const target = fs.readlinkSync(node.path)
      if (target.startsWith("/")) {
        done.length = 0
        dirs = [tree.root]
      }
      todo.unshift(...target.split("/"))
      continue
    }
    if (!node.stat.isDirectory()) return `/${[...done, part].join("/")} is not a directory in the image`
    done.push(part)
    dirs.push(node.dirs)
  }
  return { parts: done }
}

/**
 * Make the directories of `parts` in `upper` (the tree's writable directory, its first root):
 * one seen in a lower layer is copied up with its metadata, a new one is made 0755. Returns the
 * path in `upper`, and the times of the directories that were there already, for
 * {@link restoreTimes}: adding a name to a directory is no change to it.
 */
export const makeDirectories = (tree: Tree, parts: ReadonlyArray<string>) => {
  const upper = tree.root[0]!
  let path = upper
  let dirs: ReadonlyArray<string> = tree.root
  // the target itself takes the source's metadata: only the directories above it keep theirs,
  // the root included (the tree's, or a plain 0755 one over nothing): the merged root is the upper's
  if (parts.length > 0) {
    if (tree.root.length > 1) copyMetadata(fs.lstatSync(tree.root[1]!, { bigint: true }), upper)
    else fs.chmodSync(upper, 0o755)
  }
  const times: Array<{ readonly path: string; readonly stat: fs.BigIntStats }> = parts.length === 0
    ? []
    : [{ path: upper, stat: fs.lstatSync(upper, { bigint: true }) }]
  for (const [i, part] of parts.entries()) {
    const node = dirs.length === 0 ? undefined : lookup(tree, dirs, part)
    const next = `${path}/${part}`
    const own = fs.lstatSync(next, { bigint: true, throwIfNoEntry: false })
    if (own === undefined) {
      fs.mkdirSync(next, 0o755)
      if (node !== undefined) copyMetadata(node.stat, next)
    }
    if (node !== undefined && i < parts.length - 1) times.push({ path: next, stat: node.stat })
    path = next
    dirs = node?.dirs ?? []
  }
  return { path, times }
}

/** Put back the times of directories that only gained names. */
export const restoreTimes = (times: ReadonlyArray<{ readonly path: string; readonly stat: fs.BigIntStats }>): void => {
  for (const { path, stat } of [...times].reverse()) setTimesNs(path, stat.atimeNs, stat.mtimeNs)
}

const copyMetadata = (stat: fs.BigIntStats, path: string): void => {
  if (process.getuid?.() === 0) fs.lchownSync(path, Number(stat.uid), Number(stat.gid))
  fs.chmodSync(path, Number(stat.mode & 0o7777n))
  setTimesNs(path, stat.atimeNs, stat.mtimeNs)
}

