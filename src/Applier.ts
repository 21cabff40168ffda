/**
 * The applier: unpacks a layer blob onto a mounted tree, confined to that tree, and returns
 * the diffID it computed while reading. Its implementation: `TarApplier`.
 */
import { Context, Effect, Schema } from "effect"
import { Digest } from "./Digest.js"
import type { Mount } from "./Mount.js"
import type { Descriptor } from "./Oci.js"

/** Options for {@link ApplierService.apply}. */
export interface ApplyOptions {
  /** Fail with {@link WrongDiffId} unless the uncompressed layer hashes to this. */
  readonly expectedDiffId?: Digest
}

// a reason quotes paths from the layer as the system spelled them: a name may hold a newline
const oneLine = (reason: string): string => reason.replace(/\r?\n/g, "\\n")

/** A layer entry would reach outside the root. Nothing outside the root was touched. */
export class UnsafePath extends Schema.TaggedError<UnsafePath>()("UnsafePath", {
  entry: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `unsafe layer entry ${JSON.stringify(this.entry)}: ${oneLine(this.reason)}`
  }
}

/** The layer's uncompressed digest is not the expected one. */
export class WrongDiffId extends Schema.TaggedError<WrongDiffId>()("WrongDiffId", {
  layer: Digest,
  expected: Digest,
  actual: Digest
}) {
  override get message() {
    return `layer ${this.layer}: diffID ${this.actual} does not match expected ${this.expected}`
  }
}

/** The layer could not be applied (bad archive, I/O, an entry this process may not create). */
export class ApplyFailed extends Schema.TaggedError<ApplyFailed>()("ApplyFailed", {
  layer: Schema.optional(Digest),
  entry: Schema.optional(Schema.String),
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    const where = this.entry === undefined ? "" : ` at entry ${JSON.stringify(this.entry)}`
    return `apply${this.layer === undefined ? "" : ` of ${this.layer}`} failed${where}: ${oneLine(this.reason)}`
  }
}

/** Every error an applier can fail with. */
export type ApplyError = UnsafePath | WrongDiffId | ApplyFailed

/** The applier service. */
export interface ApplierService {
  /**
   * Apply the layer blob `layer` (read from the content store) onto `mounts` (one bind mount, or
   * one overlay mount with an upper directory); returns its diffID.
   */
  readonly apply: (
    layer: Descriptor,
    mounts: ReadonlyArray<Mount>,
    options?: ApplyOptions
  ) => Effect.Effect<Digest, ApplyError>
}

/** The applier. */
export class Applier extends Context.Tag("blobchain/Applier")<Applier, ApplierService>() {}


