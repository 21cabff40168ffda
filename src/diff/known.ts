/**
 * Known changes: the names at which one plain tree may differ from another, recorded by whoever
 * made the one from the other and so knows it. A build's fill of a native snapshot that shares
 * its parent's files is one: everything it did not replace is the parent's own inode, and the
 * directories it did not touch are exact copies. The walking differ then looks at those names
 * alone, as its overlay fast path looks at an upper directory alone: the cost of the diff
 * follows the size of the change, not of the tree.
 *
 * Kept in this process, for trees that no longer change (committed snapshots): the latest
 * records, up to about a million names in all.
 */
import type { Listing } from "./changes.js"
import { compareNames, lookup, type Node, type Tree } from "./tree.js"

/** Per directory (relative path; "" is the root), the names in it that may differ between two trees. */
export type ChangedNames = ReadonlyMap<string, ReadonlyArray<string>>

/**
 * A {@link Listing} for `changes(lower, upper, listing)` that lists only the names in `changed`:
 * `upper` is a plain tree rooted at `upperRoot`; everything left out is the same on both sides.
 */
export const listingOf = (changed: ChangedNames, lower: Tree, upper: Tree, upperRoot: string): Listing =>
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

// what is kept: the latest records, up to this many names in all (a build's chain is diffed
// after all its snapshots are made, so a long chain's first records must still be here then)
const maxNames = 1 << 20
const recorded = new Map<string, { readonly changed: ChangedNames; readonly names: number }>()
let namesKept = 0
const keyOf = (lowerRoot: string, upperRoot: string): string => `${lowerRoot}\0${upperRoot}`

/**
 * Record that the tree at `upperRoot` differs from the one at `lowerRoot` at most at the names in
 * `changed` (and the directories above them), and that neither tree will change any more.
 */
export const record = (lowerRoot: string, upperRoot: string, changed: ChangedNames): void => {
  const key = keyOf(lowerRoot, upperRoot)
  forget(key)
  let names = 1
  for (const list of changed.values()) names += list.length
  recorded.set(key, { changed, names })
  namesKept += names
  for (const old of recorded.keys()) {
    if (namesKept <= maxNames) break
    forget(old)
  }
}

const forget = (key: string): void => {
  const old = recorded.get(key)
  if (old === undefined) return
  recorded.delete(key)
  namesKept -= old.names
}

/** The listing of the changes recorded for `lower` → `upper` (plain trees), if any. */
export const knownListing = (lower: Tree, upper: Tree): Listing | undefined => {
  if (lower.overlay || upper.overlay || lower.root.length !== 1 || upper.root.length !== 1) return undefined
  const known = recorded.get(keyOf(lower.root[0]!, upper.root[0]!))
  return known === undefined ? undefined : listingOf(known.changed, lower, upper, upper.root[0]!)
}
