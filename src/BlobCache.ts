/**
 * The blob cache: layer blobs shared by several machines (an OCI registry repository), beside each
 * machine's own content store. A blob made here is put there once; a blob another machine made is
 * fetched from there into the content store when a build reuses it.
 */
import { Context, type Effect, Schema } from "effect"
import * as Digest from "./Digest.js"
import type { Compression, Descriptor } from "./Oci.js"

/** The cache could not be read or written; `cause` holds the registry's or the store's error. */
export class BlobCacheError extends Schema.TaggedError<BlobCacheError>()("BlobCacheError", {
  op: Schema.String,
  digest: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `blob cache ${this.op} of ${this.digest}: ${this.reason}`
  }
}

/**
 * The cache's blob is not the layer it was fetched as: it decompresses to another diffID (or not
 * at all). Nothing was stored; the entry that named it is wrong.
 */
export class NotTheLayer extends Schema.TaggedError<NotTheLayer>()("NotTheLayer", {
  digest: Digest.Digest,
  expected: Digest.Digest,
  /** The diffID it holds, or why it could not be decompressed. */
  actual: Schema.String
}) {
  override get message() {
    return `blob ${this.digest} does not hold the layer ${this.expected} (${this.actual})`
  }
}

/**
 * A fetched blob's diffID could not be checked (the thread checking it exited): nothing was
 * stored, and nothing is known of the blob or of the index entry that named it.
 */
export class LayerCheckLost extends Schema.TaggedError<LayerCheckLost>()("LayerCheckLost", {
  digest: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `blob ${this.digest} was not kept: ${this.reason}`
  }
}

/** The layer a fetched blob must hold: its compression and diffID. */
export interface LayerCheck {
  readonly compression: Compression
  readonly diffId: Digest.Digest
}

/** The blob cache service. */
export interface BlobCacheService {
  /** Where the cache is, as users name it (for messages). */
  readonly location: string
  /** Make sure the cache holds the content store's blob `descriptor`: `uploaded`, or `present` when it had it. */
  readonly put: (descriptor: Descriptor) => Effect.Effect<"uploaded" | "present", BlobCacheError>
  /**
   * Bring the cache's blob `descriptor` into the content store, verified, with `labels`: `true`,
   * or `false` when the cache does not have it. With `layer`, the blob must decompress to that
   * diffID too (checked as it arrives, in the same pass), or nothing is stored and it fails with
   * {@link NotTheLayer}; a blob already here is read once to check it.
   */
  readonly fetch: (
    descriptor: Descriptor,
    labels: Readonly<Record<string, string>>,
    layer?: LayerCheck
  ) => Effect.Effect<boolean, BlobCacheError | NotTheLayer>
}

/** The blob cache. */
export class BlobCache extends Context.Tag("blobchain/BlobCache")<BlobCache, BlobCacheService>() {}
