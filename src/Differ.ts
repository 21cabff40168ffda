/**
 * The differ: the changes between two mounted trees, written into the content store as an
 * OCI layer blob labelled with its uncompressed digest. Its layers live in `diff/`.
 */
import { Context, Effect, Schema } from "effect"
import type { ContentLocked, Labels } from "./ContentStore.js"
import type { Digest } from "./Digest.js"
import type { CompareRule } from "./fs/contents.js"
import type { Mount } from "./Mount.js"
import type { Compression, Descriptor } from "./Oci.js"

/**
 * Per directory of a tree (relative path; "" is the root), the names in it at which two trees may
 * differ. Whoever gives it vouches that every other name is the same on both sides.
 */
export type ChangedNames = ReadonlyMap<string, ReadonlyArray<string>>

export type { CompareRule } from "./fs/contents.js"

/** How to write the layer. */
export interface DiffOptions {
  /** The blob's media type; by default the OCI (or Docker) layer type of the compression. */
  readonly mediaType?: string
  /** gzip (default), zstd or none. */
  readonly compression?: Compression
  /** Compression level (gzip 1–9, zstd 1–19). */
  readonly level?: number
  /** Use the Docker media types instead of the OCI ones. */
  readonly docker?: boolean
  /** The ingest ref; reused refs are truncated first. */
  readonly reference?: string
  /** Labels for the committed blob. */
  readonly labels?: Labels
  /** Clamp every mtime to at most this many seconds since the epoch. */
  readonly sourceDateEpoch?: number
  /**
   * gzip chunks compressed at once, or zstd worker threads; by default from the core count.
   * Only the speed depends on it, never the bytes.
   */
  readonly compressionThreads?: number
  /**
   * The names at which the two trees may differ, when the caller knows them (the prints of two
   * source directories say it): only they are looked at, and the layer is the one a whole walk
   * gives when the claim holds. The upper tree must then be one plain directory.
   */
  readonly changed?: ChangedNames
  /**
   * When two files that agree in every recorded stat are compared by content: `content` (the
   * default) whenever they are distinct inodes, with digests from the content-hash index where
   * it has them; `stat` (containerd's rule) only when neither mtime has nanoseconds.
   */
  readonly compare?: CompareRule
}

/** The diff could not be made; `step` says where (mount, walk, write, commit, …). */
export class DiffFailed extends Schema.TaggedError<DiffFailed>()("DiffFailed", {
  ref: Schema.optional(Schema.String),
  step: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `diff${this.ref === undefined ? "" : ` of ${this.ref}`} failed at ${this.step}: ${this.reason}`
  }
}

/** The differ returned a blob without a usable uncompressed digest. */
export class InvalidDifferResponse extends Schema.TaggedError<InvalidDifferResponse>()("InvalidDifferResponse", {
  ref: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid differ response for ref ${this.ref}: ${this.reason}`
  }
}

/**
 * The differ service. A diff fails with {@link ContentLocked} when another writer holds the
 * ingest of its `reference` (the caller may wait and retry), else with {@link DiffFailed}; a
 * failed diff leaves nothing under its reference.
 */
export interface DifferService {
  readonly diffMounts: (
    lower: ReadonlyArray<Mount>,
    upper: ReadonlyArray<Mount>,
    options?: DiffOptions
  ) => Effect.Effect<Descriptor, DiffFailed | ContentLocked>
  /**
   * The diffID of the layer {@link diffMounts} would write with these options: its tar hashed as
   * it is made, compressed and stored nowhere. Optional: a differ without it is asked to diff.
   */
  readonly digestMounts?: (
    lower: ReadonlyArray<Mount>,
    upper: ReadonlyArray<Mount>,
    options?: Pick<DiffOptions, "sourceDateEpoch" | "changed" | "compare">
  ) => Effect.Effect<Digest, DiffFailed>
}

/** The differ. */
export class Differ extends Context.Tag("blobchain/Differ")<Differ, DifferService>() {}



/** Diff two mounted trees with the provided {@link Differ}. */
export const diffMounts = (
  lower: ReadonlyArray<Mount>,
  upper: ReadonlyArray<Mount>,
  options?: DiffOptions
): Effect.Effect<Descriptor, DiffFailed | ContentLocked, Differ> => Effect.flatMap(Differ, (d) => d.diffMounts(lower, upper, options))
