/**
 * The changes between two trees, found by walking both side by side in path order, already in
 * the order and shape of a layer: parents first, each path once, whiteouts and opaque markers.
 */
import * as fs from "node:fs"
import * as Xattr from "./xattr.js"
import { type Compared, Contents } from "./contents.js"
import { children, compareNames, type Node, type Stat, type Tree } from "./tree.js"

/** What the layer must record, in order. */
export type Change =
  /** Write `node` at `path` (a new or changed entry, or the parent of one); `""` is the root. */
  | { readonly _tag: "Entry"; readonly path: string; readonly node: Node }
  /** `path` was deleted: write `<parent>/.wh.<name>`. */
  | { readonly _tag: "Whiteout"; readonly path: string }
  /** The directory at `path` replaced a non-directory: write `<path>/.wh..wh..opq`. */
  | { readonly _tag: "Opaque"; readonly path: string }
  /** Nothing to write: a chance for the consumer to yield during long unchanged stretches. */
  | { readonly _tag: "Tick" }
  /** Nothing to write: `path` is a socket, a live endpoint no layer can hold. */
  | { readonly _tag: "Skipped"; readonly path: string }
  /**
   * Nothing to write: the walk is about to compare these files' contents (both sides of each
   * pair whose stats agree, those whose digests it does not know yet). Their digests may be in
   * the content-hash index, or read ahead (on other threads); the consumer gives what it finds to
   * the walk's {@link Contents} before asking for the next change, and the walk reads the rest.
   */
  | { readonly _tag: "Lookup"; readonly files: ReadonlyArray<Compared> }

const tickEvery = 1024

interface Pending {
  readonly path: string
  readonly node: Node
  emitted: boolean
}

/**
 * The children of one directory on both sides, each sorted by name. The default lists both
 * merged directories whole; a listing may leave out names it knows are the same on both sides.
 */
export type Listing = (
  lowerDirs: ReadonlyArray<string>,
  upperDirs: ReadonlyArray<string>
) => { readonly lower: ReadonlyArray<Node>; readonly upper: ReadonlyArray<Node> }

/**
 * Walk `lower` and `upper` together. A directory is visited right after its own entry, so a
 * depth-first walk over names sorted by bytes gives the order where `/` sorts first; in each
 * directory its whiteouts come first, before any sibling (as the image spec asks). The root is an
 * entry when its metadata changed (or there is no lower tree). Files whose stats agree are
 * decided by `contents` (see contents.ts).
 */
export function* changes(lower: Tree, upper: Tree, listing?: Listing, contents: Contents = new Contents()): Generator<Change> {
  const list: Listing = listing ?? ((lowerDirs, upperDirs) => ({
    lower: lowerDirs.length === 0 ? [] : children(lower, lowerDirs),
    upper: children(upper, upperDirs)
  }))
  const links = { lower: lazyLinkIndex(lower), upper: lazyLinkIndex(upper) }
  const ancestors: Array<Pending> = []
  let visited = 0

  function* flushAncestors(): Generator<Change> {
    for (const pending of ancestors) {
      if (!pending.emitted) {
        pending.emitted = true
        yield { _tag: "Entry", path: pending.path, node: pending.node }
      }
    }
  }

  function* added(prefix: string, dirs: ReadonlyArray<string>): Generator<Change> {
    for (const node of children(upper, dirs)) {
      if (++visited % tickEvery === 0) yield { _tag: "Tick" }
      const path = prefix + node.name
      if (node.stat.isSocket()) {
        yield { _tag: "Skipped", path }
        continue
      }
      yield { _tag: "Entry", path, node }
      if (node.stat.isDirectory()) yield* added(`${path}/`, node.dirs)
    }
  }

  function* walk(prefix: string, lowerDirs: ReadonlyArray<string>, upperDirs: ReadonlyArray<string>): Generator<Change> {
    const { lower: l, upper: u } = list(lowerDirs, upperDirs)
    // first pass: the whiteouts (names gone, or now sockets, which are never recorded), and the
    // files whose contents may decide
    const gone: Array<string> = []
    const compared: Array<Node> = []
    for (let i = 0, j = 0; i < l.length || j < u.length;) {
      const a = l[i]
      const b = u[j]
      const order = a === undefined ? 1 : b === undefined ? -1 : compareNames(a.name, b.name)
      if (order < 0) gone.push(a!.name)
      else if (order === 0 && b!.stat.isSocket()) gone.push(b!.name)
      else if (order === 0 && sameStats(a!.stat, b!.stat) && a!.stat.isFile() && contents.needsContent(a!.stat, b!.stat)) {
        compared.push(a!, b!)
      }
      if (order <= 0) i++
      if (order >= 0) j++
    }
    if (gone.length > 0) {
      yield* flushAncestors()
      for (const name of gone) yield { _tag: "Whiteout", path: prefix + name }
    }
    if (compared.length > 0) {
      const files = contents.unknown(compared)
      if (files.length > 0) yield { _tag: "Lookup", files }
    }
    let i = 0
    let j = 0
    while (i < l.length || j < u.length) {
      if (++visited % tickEvery === 0) yield { _tag: "Tick" }
      const a = l[i]
      const b = u[j]
      const order = a === undefined ? 1 : b === undefined ? -1 : compareNames(a.name, b.name)
      if (order < 0) {
        i++
        continue
      }
      j++
      const node = b!
      const path = prefix + node.name
      if (node.stat.isSocket()) {
        if (order === 0) i++
        yield { _tag: "Skipped", path }
        continue
      }
      if (order > 0) {
        yield* flushAncestors()
        yield { _tag: "Entry", path, node }
        if (node.stat.isDirectory()) yield* added(`${path}/`, node.dirs)
        continue
      }
      i++
      const old = a!
      if (node.stat.isDirectory() && old.stat.isDirectory()) {
        const pending: Pending = { path, node, emitted: false }
        if (!sameDirectory(old, node)) {
          yield* flushAncestors()
          pending.emitted = true
          yield { _tag: "Entry", path, node }
        }
        ancestors.push(pending)
        yield* walk(`${path}/`, old.dirs, node.dirs)
        ancestors.pop()
        continue
      }
      if (node.stat.isDirectory()) {
        yield* flushAncestors()
        yield { _tag: "Entry", path, node }
        yield { _tag: "Opaque", path }
        yield* added(`${path}/`, node.dirs)
        continue
      }
      if (old.stat.isDirectory() || !sameFile(old, node, path, links, contents)) {
        yield* flushAncestors()
        yield { _tag: "Entry", path, node }
      }
    }
  }

  if (upper.root.length === 0) {
    // everything below the root was deleted
    if (lower.root.length > 0) {
      for (const node of children(lower, lower.root)) yield { _tag: "Whiteout", path: node.name }
    }
    return
  }
  // the root is an ancestor of every change, but is written only for its own
  const root = rootOf(upper)
  const lowerRoot = lower.root.length === 0 ? undefined : rootOf(lower)
  if (lowerRoot === undefined || !sameDirectory(lowerRoot, root)) yield { _tag: "Entry", path: "", node: root }
  yield* walk("", lower.root, upper.root)
}

/** The root of a tree as a node: the highest of its directories holds its metadata, as in overlayfs. */
const rootOf = (tree: Tree): Node => ({
  name: "",
  path: tree.root[0]!,
  stat: fs.lstatSync(tree.root[0]!, { bigint: true }),
  dirs: tree.root
})

const sameDirectory = (a: Node, b: Node): boolean =>
  a.stat.mode === b.stat.mode && a.stat.uid === b.stat.uid && a.stat.gid === b.stat.gid &&
  a.stat.mtimeNs === b.stat.mtimeNs && Xattr.same(Xattr.list(a.path), Xattr.list(b.path))

// everything a layer entry records of a file's stat
const sameStats = (s: Stat, t: Stat): boolean =>
  s.mode === t.mode && s.uid === t.uid && s.gid === t.gid && s.rdev === t.rdev && s.size === t.size &&
  s.mtimeNs === t.mtimeNs

const sameFile = (
  a: Node,
  b: Node,
  path: string,
  links: { readonly lower: () => LinkIndex; readonly upper: () => LinkIndex },
  contents: Contents
): boolean => {
  const s = a.stat
  const t = b.stat
  if (!sameStats(s, t)) return false
  if (s.isSymbolicLink() && fs.readlinkSync(a.path) !== fs.readlinkSync(b.path)) return false
  // hard links are part of the layer: a file whose link group changed has changed
  if (s.isFile() && (s.nlink > 1n || t.nlink > 1n) && links.lower().groupOf(path) !== links.upper().groupOf(path)) return false
  if (!Xattr.same(Xattr.list(a.path), Xattr.list(b.path))) return false
  return !s.isFile() || !contents.needsContent(s, t) || contents.same(a, b)
}

/**
 * The hard-link groups of a tree: for each multiply linked file, the paths of the tree sharing
 * its inode. Links outside the tree are none of the layer's business: a file whose other links
 * are all elsewhere is a lone file here.
 */
export interface LinkIndex {
  /** A key naming the group of `path` (its sorted member paths), or "" for a lone file. */
  readonly groupOf: (path: string) => string
}

// Built only when a multiply linked file turns up, as most trees have none.
const lazyLinkIndex = (tree: Tree): (() => LinkIndex) => {
  let index: LinkIndex | undefined
  return () => {
    if (index === undefined) index = buildLinkIndex(tree)
    return index
  }
}

const buildLinkIndex = (tree: Tree): LinkIndex => {
  const byInode = new Map<string, Array<string>>()
  const inodeOf = new Map<string, string>()
  const visit = (prefix: string, dirs: ReadonlyArray<string>): void => {
    for (const node of children(tree, dirs)) {
      const path = prefix + node.name
      if (node.stat.isDirectory()) visit(`${path}/`, node.dirs)
      else if (node.stat.isFile() && node.stat.nlink > 1n) {
        const key = `${node.stat.dev}:${node.stat.ino}`
        inodeOf.set(path, key)
        const group = byInode.get(key)
        if (group === undefined) byInode.set(key, [path])
        else group.push(path)
      }
    }
  }
  if (tree.root.length > 0) visit("", tree.root)
  return {
    groupOf: (path) => {
      const key = inodeOf.get(path)
      const group = key === undefined ? [] : (byInode.get(key) ?? [])
      return group.length < 2 ? "" : group.join("\0")
    }
  }
}
