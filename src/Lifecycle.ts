/**
 * The lifecycle of a state directory: what it holds and how much of the disk each thing takes
 * (`du`). Records by kind: layer blobs, other blobs (configs, manifests), unfinished ingests,
 * snapshots, and the database with the mappings and the content-hash index it keeps. Work on
 * the directory holds a lease while it runs, and says which blobs and snapshots it uses: each
 * record knows when it was last used and how often.
 */
import { Context, type Duration, Effect, Schema } from "effect"
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
  /** For a snapshot, its parent's key. */
  parent: Schema.optional(Schema.String),
  /**
   * For a layer blob, when the directory is opened with a shared layer index: whether an entry
   * there names it (other machines find that layer by it; removed here, it is fetched again).
   */
  shared: Schema.optional(Schema.Boolean),
  /** What holds it: blob mappings that name it, the shared layer index, the snapshots over it. */
  held: Schema.optional(Schema.Array(Schema.String)),
  /** For the database, how many blob mappings and content-hash index rows it holds. */
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

/** What a prune may remove, and how much it keeps. */
export interface PrunePolicy {
  /** Everything no lease holds (otherwise only what the other options say). */
  readonly all?: boolean
  /** A ceiling on what is kept: least recently used first goes until the rest fits. */
  readonly keepStorage?: number
  /** Keep what was used this recently (milliseconds). */
  readonly keepDuration?: number
  /** Only these kinds (default: blobs, ingests and snapshots). */
  readonly kinds?: ReadonlyArray<"layer" | "blob" | "ingest" | "snapshot">
  /** Say what would go, change nothing. */
  readonly dryRun?: boolean
  /** How long to wait for running work to give back its leases (default ten minutes). */
  readonly patience?: Duration.DurationInput
}

/** One record a prune removed or kept, and why it kept it. */
export class PruneDecision extends Schema.Class<PruneDecision>("PruneDecision")({
  record: UsageRecord,
  removed: Schema.Boolean,
  /** Why it was kept: `used within --keep-duration`, `fits under --keep-storage`, `a parent of a kept snapshot`, … */
  reason: Schema.optional(Schema.String)
}) {}

/** What a prune did (or, dry, would do). */
export class PruneReport extends Schema.Class<PruneReport>("PruneReport")({
  decisions: Schema.Array(PruneDecision),
  /** Bytes of the records removed. */
  freed: Schema.Number,
  /** Bytes of the prunable records kept. */
  kept: Schema.Number,
  /** Blob mappings removed with their blobs. */
  mappings: Schema.Number,
  dryRun: Schema.Boolean
}) {}

/** A prune that could not start: work held the state directory past its patience. */
export class PruneBusy extends Schema.TaggedError<PruneBusy>()("PruneBusy", {
  leases: Schema.Number
}) {
  override get message() {
    return `${this.leases} running build(s) hold the state directory: prune waited for them and gave up`
  }
}

/** The Lifecycle service. */
export interface LifecycleService {
  /** What the state directory holds, record by record. */
  readonly du: Effect.Effect<UsageReport, LifecycleError>
  /**
   * A lease for the scope's lifetime: taken now, given back when the scope closes (or, if this
   * process dies, expired: its pid no longer runs the process that took it).
   */
  readonly lease: (owner: string, options?: { readonly expiry?: Duration.DurationInput }) => Effect.Effect<LeaseInfo, LifecycleError, Scope.Scope>
  /**
   * Remove what no work uses by `policy`, least recently used first. It holds the state directory
   * alone while it runs: it waits for running work's leases to be given back (or to expire), and
   * work that starts meanwhile waits for it. A blob's mappings go with it, in one transaction.
   */
  readonly prune: (policy: PrunePolicy) => Effect.Effect<PruneReport, LifecycleError | PruneBusy>
  /** Record a use of each of `ids`, now (once per id, however often it is listed). */
  readonly use: (kind: UsedKind, ids: ReadonlyArray<string>) => Effect.Effect<void, LifecycleError>
  /** The leases recorded, live or not. */
  readonly leases: Effect.Effect<ReadonlyArray<LeaseInfo>, LifecycleError>
}

/** The Lifecycle service tag. */
export class Lifecycle extends Context.Tag("blobchain/Lifecycle")<Lifecycle, LifecycleService>() {}

/**
 * Record a use of `ids` with `lifecycle`, when there is one: a use that cannot be recorded costs
 * the record (a warning), never the work that used them.
 */
export const recordUse = (lifecycle: LifecycleService | undefined, kind: UsedKind, ids: ReadonlyArray<string>): Effect.Effect<void> =>
  lifecycle === undefined
    ? Effect.void
    : lifecycle.use(kind, ids).pipe(Effect.catchAll((error) => Effect.logWarning(`usage not recorded: ${error.message}`)))

/**
 * Prune by `policy` after work, as `build --gc-keep-storage` does: work still holding the state
 * directory past the policy's patience (thirty seconds unless it says) means not this time, said
 * in a warning; the work that ran is not failed by it.
 */
export const collect = (lifecycle: LifecycleService, policy: PrunePolicy): Effect.Effect<void, LifecycleError> =>
  lifecycle.prune({ patience: "30 seconds", ...policy }).pipe(
    Effect.asVoid,
    Effect.catchTag("PruneBusy", (busy) => Effect.logWarning(`not pruned after the build (${busy.message})`))
  )
