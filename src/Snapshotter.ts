/**
 * Keyed filesystem snapshots: active (writable), view (read-only) and committed (immutable),
 * each on a parent. Its layers live in `snapshot/`.
 */
import { Context, Effect, Schema } from "effect"
import { Labels } from "./Labels.js"
import type { Mount } from "./Mount.js"

/** The three states of a snapshot. */
export const Kind = Schema.Literal("active", "view", "committed")
export type Kind = typeof Kind.Type

/** Labels on a snapshot (see Labels.ts). */
export { Labels }

/** What the snapshotter records of a snapshot. */
export class SnapshotInfo extends Schema.Class<SnapshotInfo>("SnapshotInfo")({
  key: Schema.String,
  parent: Schema.optional(Schema.String),
  kind: Kind,
  labels: Labels,
  createdAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf
}) {}

/** Disk use of a snapshot's own tree. */
export class Usage extends Schema.Class<Usage>("SnapshotUsage")({
  size: Schema.Number,
  inodes: Schema.Number
}) {}

/** No snapshot with this key. */
export class SnapshotNotFound extends Schema.TaggedError<SnapshotNotFound>()("SnapshotNotFound", {
  key: Schema.String
}) {
  override get message() {
    return `snapshot ${JSON.stringify(this.key)} not found`
  }
}

/** A snapshot with this key exists already. */
export class SnapshotExists extends Schema.TaggedError<SnapshotExists>()("SnapshotExists", {
  key: Schema.String
}) {
  override get message() {
    return `snapshot ${JSON.stringify(this.key)} already exists`
  }
}

/** The snapshot has children and cannot be removed. */
export class SnapshotHasChildren extends Schema.TaggedError<SnapshotHasChildren>()("SnapshotHasChildren", {
  key: Schema.String,
  children: Schema.Array(Schema.String)
}) {
  override get message() {
    return `snapshot ${JSON.stringify(this.key)} has children: ${this.children.join(", ")}`
  }
}

/** The operation does not fit the snapshot's kind (commit of a view, a parent that is not committed, …). */
export class InvalidSnapshotState extends Schema.TaggedError<InvalidSnapshotState>()("InvalidSnapshotState", {
  key: Schema.String,
  kind: Kind,
  op: Schema.String
}) {
  override get message() {
    return `cannot ${this.op} snapshot ${JSON.stringify(this.key)}: it is ${this.kind}`
  }
}

/** Any other failure (I/O, database), naming the operation and key. */
export class SnapshotterError extends Schema.TaggedError<SnapshotterError>()("SnapshotterError", {
  op: Schema.String,
  key: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `snapshotter ${this.op} ${JSON.stringify(this.key)}: ${this.reason}`
  }
}

/** Every error a snapshotter can fail with. */
export type SnapshotError =
  | SnapshotNotFound
  | SnapshotExists
  | SnapshotHasChildren
  | InvalidSnapshotState
  | SnapshotterError

/** Options when creating or committing a snapshot. */
export interface SnapshotOptions {
  readonly labels?: Labels
  /**
   * For `prepare`: the caller's promise that, until it commits or removes the new snapshot, it
   * changes the tree only by replacing entries (a non-directory is removed before anything takes
   * its place; none is written into, or given another mode, owner, time or name) and shows the
   * mounts to no one else. A snapshotter that copies its parent's tree (native) may then share
   * the parent's files with the new snapshot by hard links instead of copying their bytes;
   * directories are always its own. Others ignore it, as `view` and `commit` do.
   */
  readonly replaceOnly?: boolean
}

/** The snapshotter service. */
export interface SnapshotterService {
  /** A writable snapshot on `parent` (which must be committed); returns its mounts. */
  readonly prepare: (
    key: string,
    parent?: string,
    options?: SnapshotOptions
  ) => Effect.Effect<ReadonlyArray<Mount>, SnapshotError>
  /** A read-only snapshot on `parent`; returns its mounts. */
  readonly view: (
    key: string,
    parent?: string,
    options?: SnapshotOptions
  ) => Effect.Effect<ReadonlyArray<Mount>, SnapshotError>
  /** The mounts of an active or view snapshot, or read-only mounts of a committed one. */
  readonly mounts: (key: string) => Effect.Effect<ReadonlyArray<Mount>, SnapshotError>
  /** Turn active snapshot `key` into committed snapshot `name`. */
  readonly commit: (name: string, key: string, options?: SnapshotOptions) => Effect.Effect<void, SnapshotError>
  readonly stat: (key: string) => Effect.Effect<SnapshotInfo, SnapshotError>
  /** Merge labels (an empty value deletes one). */
  readonly update: (key: string, labels: Labels) => Effect.Effect<SnapshotInfo, SnapshotError>
  readonly usage: (key: string) => Effect.Effect<Usage, SnapshotError>
  /** Remove a snapshot without children. */
  readonly remove: (key: string) => Effect.Effect<void, SnapshotError>
  readonly walk: Effect.Effect<ReadonlyArray<SnapshotInfo>, SnapshotError>
}

/** The snapshotter. */
export class Snapshotter extends Context.Tag("blobchain/Snapshotter")<Snapshotter, SnapshotterService>() {}


