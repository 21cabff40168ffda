/**
 * The stat walk of a print in native code (native/walk.c), built at install with the xattr addon:
 * one call per tree instead of a BigIntStats object and a crossing per system call. Where it was
 * not built, or cannot walk a tree the way the print's own walk does, prints walk in JavaScript.
 */
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

/** What the addon gives for a tree: each entry's print line (attributes left out), and which entries need more. */
export interface Walked {
  readonly lines: Array<string>
  /** Entries that are not directories and have other links. */
  readonly linked: ReadonlyArray<number>
  /** Entries with an attribute a layer carries: their attribute field is to be filled. */
  readonly xattrs: ReadonlyArray<number>
}

/** The addon's walk; throws when it cannot walk the tree as the print's own walk would. */
export type NativeWalk = (dir: string) => Walked

/** Where the addon is: the same two levels up from `src/internal`, `dist/internal` and `dist/bundle`. */
export const walkAddonPath: string = fileURLToPath(new URL("../../build/Release/walk.node", import.meta.url))

const load = (): NativeWalk | undefined => {
  if (process.env.BLOBCHAIN_NATIVE_WALK === "0") return undefined
  try {
    return (createRequire(import.meta.url)(walkAddonPath) as { readonly walk: NativeWalk }).walk
  } catch {
    return undefined
  }
}

/** The native walk, or `undefined` where the addon did not load (or `BLOBCHAIN_NATIVE_WALK=0`). */
export const nativeWalk: NativeWalk | undefined = load()
