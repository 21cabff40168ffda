/**
 * The overlay fast path: when the upper tree is one more layer over exactly the lower tree's
 * layers, only the names in that layer's directories can differ, so only they are looked at.
 */
import * as fs from "node:fs"
import { type Change, changes, type Listing } from "./changes.js"
import type { ChangedNames } from "../Differ.js"
import type { Contents } from "./contents.js"
import { knownListing } from "./known.js"
import { children, compareNames, isOpaque, lookup, type Node, type Tree, whitedOutName } from "./tree.js"

/**
 * How the changes are found: `auto` takes a fast path when one applies (an overlay layer over
 * exactly the lower tree, or the names the caller says may differ: known.ts), `full`
 * always walks both trees.
 */
export type Walk = "auto" | "full"

const sameDirs = (a: ReadonlyArray<string>, b: ReadonlyArray<string>, offset: number): boolean =>
  a.length + offset === b.length && a.every((dir, i) => dir === b[i + offset])

/**
 * The directory that `upperDirs` adds on top of `lowerDirs`, when the upper merged directory is
 * exactly that one over the lower merged directory: then every name it does not hold is the same
 * node on both sides.
 */
const addedLayer = (lowerDirs: ReadonlyArray<string>, upperDirs: ReadonlyArray<string>): string | undefined =>
  upperDirs.length > 0 && sameDirs(lowerDirs, upperDirs, 1) && !isOpaque(upperDirs[0]!) ? upperDirs[0] : undefined

/** The names an overlay layer directory touches: its entries, and the names its `.wh.` files hide. */
const touchedNames = (dir: string): Array<string> => {
  const names = new Set<string>()
  for (const name of fs.readdirSync(dir)) {
    const hidden = whitedOutName(name)
    if (hidden !== undefined) names.add(hidden)
    else if (!name.startsWith(".wh.")) names.add(name)
  }
  return [...names]
}

const lookUpAll = (tree: Tree, dirs: ReadonlyArray<string>, names: ReadonlyArray<string>): Array<Node> => {
  const out: Array<Node> = []
  for (const name of names) {
    const node = lookup(tree, dirs, name)
    if (node !== undefined) out.push(node)
  }
  return out.sort((a, b) => compareNames(a.name, b.name))
}

/** Lists only the names the added layer touches where it sits right on the lower directory. */
const overlayListing = (lower: Tree, upper: Tree): Listing => (lowerDirs, upperDirs) => {
  const layer = addedLayer(lowerDirs, upperDirs)
  if (layer === undefined) {
    return { lower: lowerDirs.length === 0 ? [] : children(lower, lowerDirs), upper: children(upper, upperDirs) }
  }
  const names = touchedNames(layer)
  return { lower: lookUpAll(lower, lowerDirs, names), upper: lookUpAll(upper, upperDirs, names) }
}

// A lower file whose name the added layer shadows may have hard links elsewhere that the layer
// leaves alone: their link group changed, which only a walk of the whole tree notices.
const hasLinkedFile = (tree: Tree, dirs: ReadonlyArray<string>): boolean =>
  children(tree, dirs).some((node) =>
    node.stat.isDirectory() ? hasLinkedFile(tree, node.dirs) : node.stat.isFile() && node.stat.nlink > 1n
  )

const shadowsLinkedFile = (lower: Tree, layer: string, lowerDirs: ReadonlyArray<string>): boolean => {
  if (isOpaque(layer)) return lowerDirs.length > 0 && hasLinkedFile(lower, lowerDirs)
  for (const name of fs.readdirSync(layer)) {
    const hidden = whitedOutName(name)
    if (hidden === undefined && name.startsWith(".wh.")) continue
    const below = lookup(lower, lowerDirs, hidden ?? name)
    if (below === undefined) continue
    if (below.stat.isFile()) {
      if (below.stat.nlink > 1n) return true
      continue
    }
    if (!below.stat.isDirectory()) continue
    const here = hidden === undefined ? fs.lstatSync(`${layer}/${name}`, { throwIfNoEntry: false }) : undefined
    if (here?.isDirectory() === true ? shadowsLinkedFile(lower, `${layer}/${name}`, below.dirs) : hasLinkedFile(lower, below.dirs)) {
      return true
    }
  }
  return false
}

/** `true` when the fast path gives the walk's changes for these trees. */
export const fastPathApplies = (lower: Tree, upper: Tree): boolean =>
  upper.overlay && upper.root.length > 1 && sameDirs(lower.root, upper.root, 1) &&
  !shadowsLinkedFile(lower, upper.root[0]!, lower.root)

/**
 * The changes `lower` → `upper`, in the walk's order and shape. With `auto`, when `upper` is one
 * layer over exactly `lower`'s layers (an overlay snapshot over its parent, as BuildKit's overlay
 * differ does it), only that layer's directories are read, plus a look-up below for each of
 * their names: the cost follows the size of the change, not of the tree.
 */
export const layerChanges = (
  lower: Tree,
  upper: Tree,
  walk: Walk = "auto",
  changed?: ChangedNames,
  contents?: Contents
): Iterable<Change> => {
  if (walk === "full") return changes(lower, upper, undefined, contents)
  if (fastPathApplies(lower, upper)) return changes(lower, upper, overlayListing(lower, upper), contents)
  return changes(lower, upper, knownListing(changed, lower, upper), contents)
}
