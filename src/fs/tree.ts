/**
 * Mounts as readable trees: a bind is its source directory, no mounts the empty tree, an
 * overlay its upper directory merged over its lower ones in user space (no kernel mount).
 */
import * as fs from "node:fs"
import { layersOf, type Mount } from "../Mount.js"
import { type Listed, nativeList } from "./walk.js"

/** What the differ reads of an entry's lstat (a `BigIntStats` has all of it). */
export type Stat = Pick<
  fs.BigIntStats,
  | "dev" | "ino" | "mode" | "nlink" | "uid" | "gid" | "rdev" | "size" | "mtimeNs" | "ctimeNs"
  | "isFile" | "isDirectory" | "isSymbolicLink" | "isSocket" | "isFIFO" | "isCharacterDevice" | "isBlockDevice"
>

const fileType = 0o170000n

/** An entry's lstat as the native listing gives it: its fields in a directory's shared array. */
class ListedStat implements Stat {
  constructor(private readonly fields: BigInt64Array, private readonly at: number) {}
  get dev() { return this.fields[this.at]! }
  get ino() { return this.fields[this.at + 1]! }
  get mode() { return this.fields[this.at + 2]! }
  get nlink() { return this.fields[this.at + 3]! }
  get uid() { return this.fields[this.at + 4]! }
  get gid() { return this.fields[this.at + 5]! }
  get rdev() { return this.fields[this.at + 6]! }
  get size() { return this.fields[this.at + 7]! }
  get mtimeNs() { return this.fields[this.at + 11]! }
  get ctimeNs() { return this.fields[this.at + 12]! }
  isFile() { return (this.mode & fileType) === 0o100000n }
  isDirectory() { return (this.mode & fileType) === 0o040000n }
  isSymbolicLink() { return (this.mode & fileType) === 0o120000n }
  isSocket() { return (this.mode & fileType) === 0o140000n }
  isFIFO() { return (this.mode & fileType) === 0o010000n }
  isCharacterDevice() { return (this.mode & fileType) === 0o020000n }
  isBlockDevice() { return (this.mode & fileType) === 0o060000n }
}

const listedFields = 13

/** One child of a merged directory, with the real path it is read from. */
export interface Node {
  readonly name: string
  /** Absolute path of the file on disk (in whichever layer directory holds it). */
  readonly path: string
  readonly stat: Stat
  /** For a directory: the real directories merged into it, highest first. */
  readonly dirs: ReadonlyArray<string>
}

/** A readable tree: the real directories merged into its root, highest first ([] = empty tree). */
export interface Tree {
  readonly root: ReadonlyArray<string>
  /** Overlay layers: `.wh.` names and whiteout devices are markers, not files. */
  readonly overlay: boolean
}

/** The empty tree. */
export const empty: Tree = { root: [], overlay: false }

// overlayfs marks a directory opaque with an xattr (unreadable from Node) or, in the
// userxattr-less layouts our snapshotter writes, with this file inside it.
const opaqueMarker = ".wh..wh..opq"
const whiteoutPrefix = ".wh."

/** Why `mounts` cannot be read as a tree, or the tree. */
export const fromMounts = (mounts: ReadonlyArray<Mount>): Tree | string => {
  if (mounts.length === 0) return empty
  if (mounts.length > 1) return `expected one mount, got ${mounts.length}`
  const layers = layersOf(mounts[0]!)
  if (typeof layers === "string") return layers
  const root = layers.upper === undefined ? layers.lowers : [layers.upper, ...layers.lowers]
  return { root, overlay: layers.type === "overlay" }
}

/** An overlay whiteout: a character device with device number 0/0. */
export const isWhiteoutDevice = (stat: Stat): boolean => stat.isCharacterDevice() && stat.rdev === 0n

/**
 * Order of names: by their UTF-8 bytes, which with a depth-first walk puts `/` before every other
 * byte. Self-contained (nothing from outside but `Buffer`): the fingerprint thread runs its source.
 */
export const compareNames = (a: string, b: string): number => {
  if (a === b) return 0
  // UTF-16 code units sort as UTF-8 bytes below the surrogates: only past them is encoding needed
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    if (x < 0xd800 && y < 0xd800) return x - y
    return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))
  }
  return a.length - b.length
}

const lstatOrUndefined = (path: string): fs.BigIntStats | undefined =>
  fs.lstatSync(path, { bigint: true, throwIfNoEntry: false })

/**
 * The children of a merged directory, sorted by name. Synchronous on purpose: many small
 * stat calls are far cheaper than as many thread-pool round trips; callers yield between batches.
 */
export const children = (tree: Tree, dirs: ReadonlyArray<string>): Array<Node> => {
  if (!tree.overlay) return childrenOfOne(dirs[0]!)
  const seen = new Set<string>()
  const out: Array<Node> = []
  for (let i = 0; i < dirs.length; i++) {
    const dir = dirs[i]!
    const names = fs.readdirSync(dir)
    const opaque = names.includes(opaqueMarker)
    // a `.wh.` file hides the name in lower layers only, whatever order readdir gives
    const hidden: Array<string> = []
    for (const name of names) {
      if (name.startsWith(whiteoutPrefix)) {
        if (name !== opaqueMarker) hidden.push(name.slice(whiteoutPrefix.length))
        continue
      }
      if (seen.has(name)) continue
      seen.add(name)
      const path = `${dir}/${name}`
      const stat = fs.lstatSync(path, { bigint: true })
      if (isWhiteoutDevice(stat)) continue
      out.push({ name, path, stat, dirs: stat.isDirectory() ? mergedDirs(path, name, dirs.slice(i + 1)) : [] })
    }
    for (const name of hidden) seen.add(name)
    if (opaque) break
  }
  return out.sort((a, b) => compareNames(a.name, b.name))
}

/** A node looked up alone: its stat is a whole `BigIntStats`. */
export interface LookedUp extends Node {
  readonly stat: fs.BigIntStats
}

/**
 * The child `name` of a merged directory made of `dirs`, exactly as {@link children} would list
 * it, or `undefined` when the name is absent or whited out: a look-up without listing the directory.
 */
export const lookup = (tree: Tree, dirs: ReadonlyArray<string>, name: string): LookedUp | undefined => {
  if (!tree.overlay) {
    if (dirs.length === 0) return undefined
    const path = `${dirs[0]!}/${name}`
    const stat = lstatOrUndefined(path)
    return stat === undefined ? undefined : { name, path, stat, dirs: stat.isDirectory() ? [path] : [] }
  }
  if (name.startsWith(whiteoutPrefix)) return undefined
  for (let i = 0; i < dirs.length; i++) {
    const dir = dirs[i]!
    const path = `${dir}/${name}`
    const stat = lstatOrUndefined(path)
    if (stat !== undefined) {
      if (isWhiteoutDevice(stat)) return undefined
      return { name, path, stat, dirs: stat.isDirectory() ? mergedDirs(path, name, dirs.slice(i + 1)) : [] }
    }
    if (fs.existsSync(`${dir}/${whiteoutPrefix}${name}`) || fs.existsSync(`${dir}/${opaqueMarker}`)) return undefined
  }
  return undefined
}

/** `true` when the layer directory `dir` hides everything below it (it holds the opaque marker). */
export const isOpaque = (dir: string): boolean => fs.existsSync(`${dir}/${opaqueMarker}`)

/** The name a layer directory's entry `name` whites out, if it is a `.wh.` whiteout file. */
export const whitedOutName = (name: string): string | undefined =>
  name.startsWith(whiteoutPrefix) && name !== opaqueMarker ? name.slice(whiteoutPrefix.length) : undefined

// One directory of a plain tree: listed in native code where the addon loaded; where it could
// not list it (a name not UTF-8, a failed call), as here, which fails or not as it does.
const childrenOfOne = (dir: string): Array<Node> => {
  const node = (name: string, stat: Stat): Node => {
    const path = `${dir}/${name}`
    return { name, path, stat, dirs: stat.isDirectory() ? [path] : [] }
  }
  const listed = listNatively(dir)
  const out = listed === undefined
    ? fs.readdirSync(dir).map((name) => node(name, fs.lstatSync(`${dir}/${name}`, { bigint: true })))
    : listed.names.map((name, i) => node(name, new ListedStat(listed.stats, i * listedFields)))
  return out.sort((a, b) => compareNames(a.name, b.name))
}

const listNatively = (dir: string): Listed | undefined => {
  try {
    return nativeList?.(dir)
  } catch {
    return undefined
  }
}

// A directory merges with same-named directories below it until a lower layer whites it
// out, holds a non-directory there, or the directory itself is opaque.
const mergedDirs = (path: string, name: string, lowerParents: ReadonlyArray<string>): Array<string> => {
  const dirs = [path]
  if (fs.existsSync(`${path}/${opaqueMarker}`)) return dirs
  for (const parent of lowerParents) {
    if (fs.existsSync(`${parent}/${whiteoutPrefix}${name}`)) break
    const stat = lstatOrUndefined(`${parent}/${name}`)
    if (stat === undefined) continue
    if (!stat.isDirectory()) break
    dirs.push(`${parent}/${name}`)
    if (fs.existsSync(`${parent}/${name}/${opaqueMarker}`)) break
  }
  return dirs
}
