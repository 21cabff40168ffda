/** Trees from mounts, and the diffID of the layer between two, for the differ's fast-path tests. */
import { Effect } from "effect"
import { layerTar } from "../../src/diff/layer.js"
import type { Walk } from "../../src/fs/overlayChanges.js"
import { fromMounts, type Tree } from "../../src/fs/tree.js"
import * as Digest from "../../src/Digest.js"
import type { Mount } from "../../src/Mount.js"

/** The tree `mounts` show; throws when they cannot be read as one. */
export const treeOf = (mounts: ReadonlyArray<Mount>): Tree => {
  const tree = fromMounts(mounts)
  if (typeof tree === "string") throw new Error(tree)
  return tree
}

/** The diffID of the layer lower → upper, found the given way. */
export const diffId = (lower: Tree, upper: Tree, walk: Walk) =>
  Effect.promise(async () => {
    const hash = Digest.hasher()
    for await (const _chunk of layerTar(lower, upper, { walk }, hash)) {
      // the hasher sees every byte as it is produced
    }
    return hash.digest()
  })
