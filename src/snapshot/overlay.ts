/**
 * The overlay snapshotter: per snapshot an upper directory `fs` and a `work` directory, shown as
 * overlay mounts over its ancestors' upper directories (containerd's overlay snapshotter form).
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Mount from "../Mount.js"
import { type Kind, SnapshotterError } from "../Snapshotter.js"
import { io, type Layout, makeWithLayout } from "./native.js"
import * as Tree from "../fs/copy.js"

/** Where the snapshots live. */
export interface OverlayOptions {
  /** The state directory; snapshots go to `root/snapshots/`. */
  readonly root: string
}

const upperOf = (dir: string): string => NodePath.join(dir, "fs")
const workOf = (dir: string): string => NodePath.join(dir, "work")

/** A read-only overlay of `layers` (highest first), or a read-only bind when there is just one. */
const readonlyStack = (layers: ReadonlyArray<string>): ReadonlyArray<Mount.Mount> =>
  layers.length === 1
    ? [Mount.bind(layers[0]!, true)]
    : [new Mount.Mount({ type: "overlay", source: "overlay", options: ["ro", `lowerdir=${layers.join(":")}`] })]

/**
 * The mounts of a snapshot whose directory and ancestors' are `dirs` (nearest first):
 * - active: its upper directory over its ancestors' (a plain writable bind without a parent);
 * - view: its ancestors' directories, read-only (its own stays empty; a bind of its own without a parent);
 * - committed: its own directory over its ancestors', read-only — how a committed ref is read.
 */
export const mountsOf = (kind: Kind, dirs: ReadonlyArray<string>): ReadonlyArray<Mount.Mount> => {
  const own = dirs[0] ?? ""
  const lowers = dirs.slice(1).map(upperOf)
  switch (kind) {
    case "active":
      return lowers.length === 0
        ? [Mount.bind(upperOf(own), false)]
        : [
          new Mount.Mount({
            type: "overlay",
            source: "overlay",
            options: [`workdir=${workOf(own)}`, `upperdir=${upperOf(own)}`, `lowerdir=${lowers.join(":")}`]
          })
        ]
    case "view":
      return readonlyStack(lowers.length === 0 ? [upperOf(own)] : lowers)
    case "committed":
      return readonlyStack([upperOf(own), ...lowers])
  }
}

/** The overlay layout: preparing a snapshot creates two empty directories and copies nothing. */
export const overlayLayout: Layout = {
  populate: (op, key, staging, parentDir) =>
    io(op, key, () => {
      fs.mkdirSync(upperOf(staging), { mode: 0o755 })
      // overlayfs wants the work directory empty and on the upper directory's filesystem
      fs.mkdirSync(workOf(staging), { mode: 0o711 })
    }).pipe(
      Effect.zipRight(
        parentDir === undefined ? Effect.void : Tree.copyRootMetadata(upperOf(parentDir), upperOf(staging)).pipe(
          // the merged root directory is the upper one's: it starts as the parent's
          Effect.mapError((error) => new SnapshotterError({ op, key, reason: error.message, cause: error }))
        )
      )
    ),
  mounts: mountsOf,
  usesAncestors: true
}

/** The overlay snapshotter over the SqlClient in context (its tables already migrated). */
export const make = (options: OverlayOptions) => makeWithLayout(options.root, overlayLayout)
