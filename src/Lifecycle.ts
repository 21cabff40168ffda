/**
 * The lifecycle of a state directory: what it holds and how much of the disk each thing takes
 * (`du`). Records by kind: layer blobs, other blobs (configs, manifests), unfinished ingests,
 * snapshots, and the database with the mappings and the content-hash index it keeps.
 */
import { Context, type Effect, Schema } from "effect"

/** What a record is. */
export const Kind = Schema.Literal("layer", "blob", "ingest", "snapshot", "database")
export type Kind = typeof Kind.Type

/** One thing the state directory holds. */
export class UsageRecord extends Schema.Class<UsageRecord>("UsageRecord")({
  kind: Kind,
  /** The blob's digest, the ingest's ref, the snapshot's key, or the database's file name. */
  id: Schema.String,
  /** Bytes: a blob's size, an ingest's bytes written, a snapshot tree's blocks on disk, the database's files. */
  size: Schema.Number,
  createdAt: Schema.DateFromSelf,
  /** When it was last written or labelled (a build that reuses a blob labels it). */
  updatedAt: Schema.DateFromSelf,
  /** For a snapshot, its parent; for the database, how many blob mappings and content-hash index rows it holds. */
  detail: Schema.optional(Schema.String)
}) {}

/** The records, their totals by kind, and what the directory takes on disk. */
export class UsageReport extends Schema.Class<UsageReport>("UsageReport")({
  root: Schema.String,
  records: Schema.Array(UsageRecord),
  totals: Schema.Array(Schema.Struct({ kind: Kind, count: Schema.Number, size: Schema.Number })),
  /** Blocks on disk under the state directory, each hard-linked file once. */
  onDisk: Schema.Number,
  /** Blob mappings and content-hash index rows (in the database's size). */
  mappings: Schema.Number,
  indexed: Schema.Number
}) {}

/** The state directory could not be read. */
export class LifecycleError extends Schema.TaggedError<LifecycleError>()("LifecycleError", {
  op: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `state directory ${this.op}: ${this.reason}`
  }
}

/** The Lifecycle service. */
export interface LifecycleService {
  /** What the state directory holds, record by record. */
  readonly du: Effect.Effect<UsageReport, LifecycleError>
}

/** The Lifecycle service tag. */
export class Lifecycle extends Context.Tag("blobchain/Lifecycle")<Lifecycle, LifecycleService>() {}
