/**
 * Known changes: a listing of the walk that looks only at the names at which two trees may
 * differ, given by whoever knows them (the prints of two source directories): the cost of the
 * diff follows the size of the change, not of the tree.
 */
import type { ChangedNames } from "../Differ.js"
import type { Listing } from "./changes.js"
import { compareNames, lookup, type Node, type Tree } from "./tree.js"

/**
 * A {@link Listing} for `changes(lower, upper, listing)` that lists only the names in `changed`:
 * `upper` is a plain tree rooted at `upperRoot`; everything left out is the same on both sides.
 */
const listingOf = (changed: ChangedNames, lower: Tree, upper: Tree, upperRoot: string): Listing =>
(lowerDirs, upperDirs) => {
  const at = upperDirs[0] ?? upperRoot
  const relative = at === upperRoot ? "" : at.slice(upperRoot.length + 1)
  const names = changed.get(relative) ?? []
  const pick = (tree: Tree, dirs: ReadonlyArray<string>): Array<Node> =>
    dirs.length === 0 ? [] : names.flatMap((name) => {
      const node = lookup(tree, dirs, name)
      return node === undefined ? [] : [node]
    }).sort((a, b) => compareNames(a.name, b.name))
  return { lower: pick(lower, lowerDirs), upper: pick(upper, upperDirs) }
}

/** The listing of `changed` for `lower` → `upper`, when `upper` is one plain directory (else a whole walk). */
export const knownListing = (changed: ChangedNames | undefined, lower: Tree, upper: Tree): Listing | undefined =>
  changed === undefined || upper.overlay || upper.root.length !== 1
    ? undefined
    : listingOf(changed, lower, upper, upper.root[0]!)
