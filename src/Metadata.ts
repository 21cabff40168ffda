/**
 * The metadata database of a state directory: one SQLite file (WAL mode) holding content
 * labels, snapshot records, blob mappings, usage records and leases, its schema made by migrations.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import { Cause, Config, type ConfigError, Effect, FiberId, Layer, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as ContentSchema from "./content/schema.js"
import * as BlobMapSchema from "./blobmap/schema.js"
import * as SnapshotSchema from "./snapshot/schema.js"
import * as LifecycleSchema from "./lifecycle/schema.js"

/** The database could not be opened or migrated. */
export class MetadataError extends Schema.TaggedError<MetadataError>()("MetadataError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `metadata database ${this.path}: ${this.reason}`
  }
}

/** The file name of the database inside a state directory. */
export const filename = "metadata.db"

/** Every migration, in order. */
export const migrations = SqliteMigrator.fromRecord({
  "0001_content": ContentSchema.migration,
  "0002_snapshots": SnapshotSchema.migration,
  "0003_blob_mappings": BlobMapSchema.migration,
  "0004_lifecycle": LifecycleSchema.migration
})

/** Bring a database up to date. */
export const migrate = SqliteMigrator.run({ loader: migrations }).pipe(
  // processes opening a new state directory together race to migrate it: the losers retry
  // and find the work done
  Effect.retry({ schedule: Schedule.exponential("20 millis").pipe(Schedule.jittered), times: 8 }),
  Effect.provide(NodeContext.layer),
  Effect.withSpan("Metadata.migrate")
)

/** `reason`, and that the disk is full when it is (SQLite says only "disk I/O error" then). */
const withDiskFull = (root: string, reason: string): string => {
  try {
    return fs.statfsSync(root).bavail === 0 && !/no space/i.test(reason) ? `${reason} (no space left on device)` : reason
  } catch {
    return reason
  }
}

/** The metadata database of the state directory `root` (which must exist), migrated. */
export const layer = (options: { readonly root: string }): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, MetadataError> => {
  const path = NodePath.join(options.root, filename)
  return Layer.effectDiscard(migrate).pipe(
    Layer.provideMerge(SqliteClient.layer({ filename: path })),
    // opening the database throws where it cannot (a full disk: "disk I/O error" from the first
    // pragma), which the client lets through as a defect: a failure of this layer like any other
    Layer.catchAllCause((cause) => {
      const error = Cause.squash(cause)
      const failure = Cause.isInterruptedOnly(cause) ? Cause.interrupt(FiberId.none) : Cause.fail(
        error instanceof MetadataError
          ? error
          : new MetadataError({ path, reason: withDiskFull(options.root, error instanceof Error ? error.message : String(error)), cause: error })
      )
      return Layer.effectContext(Effect.failCause(failure))
    })
  )
}

/** {@link layer} with the state directory read from Effect's `Config`. */
export const layerConfig = (
  config: Config.Config.Wrap<{ readonly root: string }>
): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
