/**
 * Files that hold the same bytes because they share their blocks: a copy made by reflink (`cp
 * --reflink`, coreutils' default on XFS, btrfs and bcachefs) shares every extent of its original.
 * The file system says so (FIEMAP, from native/extents.c on the thread pool), and neither file
 * is read. Where the addon was not built, or the file system keeps no shared blocks, nothing is
 * told this way and the files are read.
 */
import * as fs from "node:fs"
import { sameKey, type StatKey } from "../ContentIndex.js"
import { addonPath, loadAddon } from "../internal/addon.js"

interface Addon {
  readonly sameExtents: (pairs: Array<string>, done: (same: Uint8Array, keys: BigInt64Array) => void) => void
}

const loaded = loadAddon<Addon>(addonPath("extents"))
const addon: Addon | undefined = "addon" in loaded ? loaded.addon : undefined

// file systems whose files can share blocks: XFS, btrfs, bcachefs, OCFS2 (statfs f_type)
const sharing: ReadonlySet<number> = new Set([0x58465342, 0x9123683e, 0xca451a4e, 0x7461636f])

/** Whether files under `dir` may share their blocks with others (its file system has reflinks, the addon is here). */
export const mayShare = (dir: string): boolean => {
  if (addon === undefined) return false
  try {
    return sharing.has(Number(fs.statfsSync(dir).type))
  } catch {
    return false
  }
}

/** A file and the stat key it is expected to have. */
export interface Keyed {
  readonly path: string
  readonly key: StatKey
}

// the stat key the addon gives at `at` (dev, ino, size, mtime ns, ctime ns)
const keyAt = (keys: BigInt64Array, at: number): StatKey => ({
  dev: keys[at]!,
  ino: keys[at + 1]!,
  size: keys[at + 2]!,
  mtimeNs: keys[at + 3]!,
  ctimeNs: keys[at + 4]!
})

/**
 * For each pair, whether both files share every block (so hold the same bytes) while having the
 * stat keys given: their keys once their extents were read, so that no write since the keys were
 * taken went unseen (a caller trusts only keys older than a racy second). `false` when it cannot
 * be told, the addon missing included.
 */
export const sameBlocks = (pairs: ReadonlyArray<readonly [Keyed, Keyed]>): Promise<Array<boolean>> =>
  addon === undefined || pairs.length === 0
    ? Promise.resolve(pairs.map(() => false))
    : new Promise((resolve) => {
      try {
        addon.sameExtents(pairs.flatMap(([a, b]) => [a.path, b.path]), (same, keys) =>
          resolve(pairs.map(([a, b], i) => same[i] === 1 && sameKey(keyAt(keys, i * 10), a.key) && sameKey(keyAt(keys, i * 10 + 5), b.key))))
      } catch {
        resolve(pairs.map(() => false))
      }
    })
