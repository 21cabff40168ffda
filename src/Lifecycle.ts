/**
 * The lifecycle of a state directory: what it holds and how much of the disk each thing takes
 * (`du`). Records by kind: layer blobs, other blobs (configs, manifests), unfinished ingests,
 * snapshots, and the database with the mappings and the content-hash index it keeps. Work on
 * the directory holds a lease while it runs, and says which blobs and snapshots it uses: each
 * record knows when it was last used and how often.
 */
import { Context, type Duration, type Effect, Schema } from "effect"
import type * as Scope from "effect/Scope"

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
  /** When it was last written or labelled. */
  updatedAt: Schema.DateFromSelf,
  /** When work last used it (its creation when none has), and how many times. */
  lastUsed: Schema.DateFromSelf,
  uses: Schema.Number,
  /** For a snapshot, its parent; for the database, how many blob mappings and content-hash index rows it holds. */
  detail: Schema.optional(Schema.String)
}) {}

/** Work running on the state directory (or that ran, and whose owner is gone). */
export class LeaseInfo extends Schema.Class<LeaseInfo>("LeaseInfo")({
  id: Schema.String,
  /** What holds it: `build`, `pull`, a library user's name. */
  owner: Schema.String,
  pid: Schema.Number,
  createdAt: Schema.DateFromSelf,
  expiresAt: Schema.DateFromSelf,
  /** Its process runs (the same process: its start time agrees) and it has not expired. */
  live: Schema.Boolean
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
  indexed: Schema.Number,
  leases: Schema.Array(LeaseInfo)
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

/** What can be used: blobs by digest, snapshots by key. */
export type UsedKind = "blob" | "snapshot"

/** The Lifecycle service. */
export interface LifecycleService {
  /** What the state directory holds, record by record. */
  readonly du: Effect.Effect<UsageReport, LifecycleError>
  /**
   * A lease for the scope's lifetime: taken now, given back when the scope closes (or, if this
   * process dies, expired: its pid no longer runs the process that took it).
   */
  readonly lease: (owner: string, options?: { readonly expiry?: Duration.DurationInput }) => Effect.Effect<LeaseInfo, LifecycleError, Scope.Scope>
  /** Record a use of each of `ids`, now (once per id, however often it is listed). */
  readonly use: (kind: UsedKind, ids: ReadonlyArray<string>) => Effect.Effect<void, LifecycleError>
  /** The leases recorded, live or not. */
  readonly leases: Effect.Effect<ReadonlyArray<LeaseInfo>, LifecycleError>
}

/** The Lifecycle service tag. */
export class Lifecycle extends Context.Tag("blobchain/Lifecycle")<Lifecycle, LifecycleService>() {}
