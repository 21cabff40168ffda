/**
 * The lifecycle of a local state directory: its blobs and ingests from the content store, its
 * snapshots from the snapshotter, the database from its files and tables, and the directory's
 * blocks on disk counted once per inode (native snapshots share files with their parents).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { ContentStore } from "../ContentStore.js"
import { type Kind, LifecycleError, type LifecycleService, UsageRecord, UsageReport } from "../Lifecycle.js"
import { LabelUncompressed } from "../Oci.js"
import { Snapshotter } from "../Snapshotter.js"
import { usage } from "../fs/usage.js"

const kinds: ReadonlyArray<Kind> = ["layer", "blob", "ingest", "snapshot", "database"]

const failure = (op: string) => (cause: unknown) =>
  new LifecycleError({ op, reason: cause instanceof Error ? cause.message : String(cause), cause })

// the rows of a table, or none when it does not exist (yet)
const countOf = (sql: SqlClient.SqlClient, table: string) =>
  sql.unsafe<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).pipe(
    Effect.map((rows) => Number(rows[0]?.n ?? 0)),
    Effect.catchAll(() => Effect.succeed(0))
  )

/** The lifecycle of the state directory `root` (its metadata database is the SqlClient in context). */
export const make = (root: string) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const snapshotter = yield* Snapshotter
    const sql = yield* SqlClient.SqlClient

    const du = Effect.gen(function*() {
      const blobs = yield* store.walk().pipe(Effect.mapError(failure("du: blobs")))
      const ingests = yield* store.statuses.pipe(Effect.mapError(failure("du: ingests")))
      const snapshots = yield* snapshotter.walk.pipe(Effect.mapError(failure("du: snapshots")))
      const records: Array<UsageRecord> = []
      for (const info of blobs) {
        records.push(
          new UsageRecord({
            kind: info.labels[LabelUncompressed] === undefined ? "blob" : "layer",
            id: info.digest,
            size: info.size,
            createdAt: info.createdAt,
            updatedAt: info.updatedAt
          })
        )
      }
      for (const status of ingests) {
        records.push(new UsageRecord({ kind: "ingest", id: status.ref, size: status.offset, createdAt: status.startedAt, updatedAt: status.updatedAt }))
      }
      const sizes = yield* Effect.forEach(snapshots, (info) => snapshotter.usage(info.key).pipe(Effect.mapError(failure(`du: snapshot ${info.key}`))), {
        concurrency: 4
      })
      snapshots.forEach((info, i) => {
        records.push(
          new UsageRecord({
            kind: "snapshot",
            id: info.key,
            size: sizes[i]!.size,
            createdAt: info.createdAt,
            updatedAt: info.updatedAt,
            ...(info.parent === undefined ? {} : { detail: `parent ${info.parent}` })
          })
        )
      })
      const mappings = yield* countOf(sql, "blob_mappings")
      const indexed = yield* countOf(sql, "content_index")
      const database = yield* Effect.try({
        try: () => {
          const files = fs.readdirSync(root).filter((name) => /^metadata\.db(-wal|-shm|-journal)?$/.test(name))
          const stats = files.map((name) => fs.statSync(NodePath.join(root, name)))
          return stats.length === 0 ? Option.none() : Option.some({
            size: stats.reduce((n, s) => n + s.size, 0),
            createdAt: new Date(Math.min(...stats.map((s) => s.birthtimeMs || s.ctimeMs))),
            updatedAt: new Date(Math.max(...stats.map((s) => s.mtimeMs)))
          })
        },
        catch: failure("du: database")
      })
      if (Option.isSome(database)) {
        records.push(
          new UsageRecord({
            kind: "database",
            id: "metadata.db",
            ...database.value,
            detail: `${mappings} blob mappings, ${indexed} content-hash index rows`
          })
        )
      }
      const onDisk = yield* Effect.try({ try: () => usage(root).size, catch: failure("du: walk") })
      const totals = kinds.map((kind) => {
        const of = records.filter((r) => r.kind === kind)
        return { kind, count: of.length, size: of.reduce((n, r) => n + r.size, 0) }
      })
      return new UsageReport({ root, records, totals, onDisk, mappings, indexed })
    }).pipe(Effect.withSpan("Lifecycle.du", { attributes: { root } }))

    const service: LifecycleService = { du }
    return service
  })
