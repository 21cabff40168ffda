/**
 * The stat walk of a print in native code (native/walk.c), built at install with the xattr addon:
 * one call per tree instead of a BigIntStats object and a crossing per system call. Where it was
 * not built, or cannot walk a tree the way the print's own walk does, prints walk in JavaScript.
 */
import { addonPath, loadAddon } from "../internal/addon.js"

/**
 * What the addon gives for a tree: each entry's print line (attributes left out), one after
 * another in `bytes`, each ending at `ends[i]`; and which entries need more.
 */
export interface Walked {
  readonly bytes: Uint8Array
  readonly ends: Uint32Array
  /** Entries that are not directories and have other links. */
  readonly linked: ReadonlyArray<number>
  /** Entries with an attribute a layer carries, in walk order: their attribute field is to be filled. */
  readonly xattrs: ReadonlyArray<number>
}

/** The flag of a walk that lists no attribute names: `xattrs` stays empty (see `Fingerprinter.statDigestOf`). */
export const noXattrs = 1

/**
 * The addon's walk; throws when it cannot walk the tree as the print's own walk would. Given
 * `onChunk`, it hands the lines over in stretches of about 1 MiB instead, each with indexes of its
 * own (counted from its first line), its bytes a view of one buffer the next stretch is written
 * into (good until `onChunk` returns): for a digest, whose memory is then one stretch, not the
 * whole tree's lines (20 MB for a root filesystem).
 */
export interface NativeWalk {
  (dir: string): Walked & { readonly newestCtime: bigint }
  /** Returns the latest ctime of any entry (ns). */
  (dir: string, onChunk: (stretch: Walked) => void, flags?: typeof noXattrs): bigint
}

/** Where the addon is (see internal/addon.ts). */
export const walkAddonPath: string = addonPath("walk")

/**
 * One directory's entries in readdir's order and their lstat, 13 fields each in `stats` (dev,
 * ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, atime, mtime, ctime; times in ns).
 */
export interface Listed {
  readonly names: Array<string>
  readonly stats: BigInt64Array
}

/** The addon's listing of a directory; throws when it cannot list it as `readdir` and `lstat` would. */
export type NativeList = (dir: string) => Listed

interface Addon {
  readonly walk: NativeWalk
  readonly list: NativeList
}

const load = (): Addon | undefined => {
  if (process.env.BLOBCHAIN_NATIVE_WALK === "0") return undefined
  const loaded = loadAddon<Addon>(walkAddonPath)
  return "addon" in loaded ? loaded.addon : undefined
}

const addon = load()

/** The native walk, or `undefined` where the addon did not load (or `BLOBCHAIN_NATIVE_WALK=0`). */
export const nativeWalk: NativeWalk | undefined = addon?.walk

/** The native listing of one directory, or `undefined` as for {@link nativeWalk}. */
export const nativeList: NativeList | undefined = addon?.list
