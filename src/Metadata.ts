/**
 * The metadata database of a state directory: one SQLite file (WAL mode) holding content
 * labels, snapshot records, blob mappings, usage records and leases, its schema made by migrations.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import { Cause, Config, type ConfigError, Data, Effect, FiberId, Layer, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as ContentSchema from "./content/schema.js"
import * as BlobMapSchema from "./blobmap/schema.js"
import * as SnapshotSchema from "./snapshot/schema.js"
import * as LifecycleSchema from "./lifecycle/schema.js"
import { messageOf } from "./internal/messageOf.js"

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
const migrationRecord = {
  "0001_content": ContentSchema.migration,
  "0002_snapshots": SnapshotSchema.migration,
  "0003_blob_mappings": BlobMapSchema.migration,
  "0004_lifecycle": LifecycleSchema.migration
}
export const migrations = SqliteMigrator.fromRecord(migrationRecord)

/** The id of the last migration: a database that records it (or a later one) is up to date. */
const latestMigration = Math.max(...Object.keys(migrationRecord).map((key) => Number.parseInt(key, 10)))

/**
 * Another connection's migration of the same database has not committed yet. The migrator takes
 * its own failure to record the migrations (SQLite refuses to upgrade a read transaction to a
 * write while another connection writes) for "someone else is migrating" and returns as if the
 * work were done, over tables this connection cannot see yet.
 */
export class MigrationPending extends Data.TaggedError("MigrationPending")<{ readonly recorded: number }> {
  override get message() {
    return `another process is migrating this database (it records migration ${this.recorded} of ${latestMigration} so far)`
  }
}

/** Whether a failure is one that waiting for another connection cures. */
const isContention = (error: unknown): boolean =>
  error instanceof MigrationPending || /SQLITE_BUSY|database is locked/.test(messageOf(error))

/** One attempt at bringing a database up to date, failing while another connection's migration is under way. */
export const migrateOnce = Effect.gen(function*() {
  yield* SqliteMigrator.run({ loader: migrations })
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly id: number | null }>`SELECT MAX(migration_id) AS id FROM effect_sql_migrations`
  const recorded = rows[0]?.id ?? 0
  if (recorded < latestMigration) return yield* new MigrationPending({ recorded })
}).pipe(Effect.provide(NodeContext.layer))

/**
 * Bring a database up to date. Processes opening a new state directory together race to migrate
 * it: the losers wait, retrying, until the winner's migration has committed.
 */
export const migrate = migrateOnce.pipe(
  Effect.retry({
    // each wait at most half a second, about 30 s in all: a loaded machine's migration, then fsync
    schedule: Schedule.exponential("20 millis").pipe(Schedule.jittered, Schedule.union(Schedule.spaced("500 millis"))),
    times: 60,
    while: isContention
  }),
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
          : new MetadataError({ path, reason: withDiskFull(options.root, messageOf(error)), cause: error })
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
