/**
 * The lifecycle of a local state directory: its blobs and ingests from the content store, its
 * snapshots from the snapshotter, the database from its files and tables, and the directory's
 * blocks on disk counted once per inode (native snapshots share files with their parents).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Duration, Effect, Option, Schema } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { ContentStore } from "../ContentStore.js"
import { type Kind, LeaseInfo, LifecycleError, type LifecycleService, UsageRecord, UsageReport } from "../Lifecycle.js"
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

/**
 * When process `pid` started (clock ticks since boot, from /proc), so that a pid the kernel gave
 * to another process since is not taken for the lease's owner; `""` where /proc cannot say.
 */
export const processStarted = (pid: number): string => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // the command name may hold spaces and parentheses: the fields start after the last ")"
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? ""
  } catch {
    return ""
  }
}

/** Whether the process that took a lease runs: the pid exists and, where /proc tells, started then. */
const owned = (pid: number, started: string): boolean => {
  try {
    process.kill(pid, 0)
  } catch (cause) {
    // EPERM: it runs, as another user
    if ((cause as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  return started === "" || processStarted(pid) === started
}

const LeaseRow = Schema.Struct({
  id: Schema.String,
  owner: Schema.String,
  pid: Schema.Number,
  pid_started: Schema.String,
  created_at: Schema.Number,
  expires_at: Schema.Number
})
const UsageRow = Schema.Struct({ kind: Schema.String, id: Schema.String, last_used_at: Schema.Number, uses: Schema.Number })

// rows per upsert: four parameters each, well under SQLite's limit
const batch = 500

/** The lifecycle of the state directory `root` (its metadata database is the SqlClient in context). */
export const make = (root: string) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const snapshotter = yield* Snapshotter
    const sql = yield* SqlClient.SqlClient

    const leases = sql`SELECT id, owner, pid, pid_started, created_at, expires_at FROM leases`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(LeaseRow))),
      Effect.map((rows) => {
        const now = Date.now()
        return rows.map((row) =>
          new LeaseInfo({
            id: row.id,
            owner: row.owner,
            pid: row.pid,
            createdAt: new Date(row.created_at),
            expiresAt: new Date(row.expires_at),
            live: row.expires_at > now && owned(row.pid, row.pid_started)
          })
        )
      }),
      Effect.mapError(failure("leases"))
    )

    const lease = (owner: string, options: { readonly expiry?: Duration.DurationInput } = {}) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const now = Date.now()
          const info = new LeaseInfo({
            id: randomUUID(),
            owner,
            pid: process.pid,
            createdAt: new Date(now),
            expiresAt: new Date(now + Duration.toMillis(Duration.decode(options.expiry ?? "24 hours"))),
            live: true
          })
          yield* sql`INSERT INTO leases ${sql.insert({
            id: info.id,
            owner,
            pid: info.pid,
            pid_started: processStarted(process.pid),
            created_at: now,
            expires_at: info.expiresAt.getTime()
          })}`.pipe(Effect.mapError(failure(`lease for ${owner}`)))
          return info
        }),
        // a lease that cannot be given back expires with this process
        (info) => Effect.ignore(sql`DELETE FROM leases WHERE id = ${info.id}`)
      )

    const use = (kind: "blob" | "snapshot", ids: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const now = Date.now()
        const unique = [...new Set(ids)]
        for (let at = 0; at < unique.length; at += batch) {
          const rows = unique.slice(at, at + batch).map((id) => ({ kind, id, last_used_at: now, uses: 1 }))
          yield* sql`INSERT INTO usage ${sql.insert(rows)}
            ON CONFLICT (kind, id) DO UPDATE SET last_used_at = excluded.last_used_at, uses = usage.uses + 1`
        }
      }).pipe(Effect.mapError(failure(`use of ${ids.length} ${kind}s`)))

    const du = Effect.gen(function*() {
      const used = yield* sql`SELECT kind, id, last_used_at, uses FROM usage`.pipe(
        Effect.flatMap(Schema.decodeUnknown(Schema.Array(UsageRow))),
        Effect.map((rows) => new Map(rows.map((row) => [`${row.kind} ${row.id}`, row]))),
        Effect.mapError(failure("du: usage"))
      )
      const usageOf = (kind: "blob" | "snapshot", id: string, createdAt: Date) => {
        const row = used.get(`${kind} ${id}`)
        return { lastUsed: row === undefined ? createdAt : new Date(row.last_used_at), uses: row?.uses ?? 0 }
      }
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
            updatedAt: info.updatedAt,
            ...usageOf("blob", info.digest, info.createdAt)
          })
        )
      }
      for (const status of ingests) {
        records.push(
          new UsageRecord({
            kind: "ingest",
            id: status.ref,
            size: status.offset,
            createdAt: status.startedAt,
            updatedAt: status.updatedAt,
            lastUsed: status.updatedAt,
            uses: 1
          })
        )
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
            ...usageOf("snapshot", info.key, info.createdAt),
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
            lastUsed: database.value.updatedAt,
            uses: 0,
            detail: `${mappings} blob mappings, ${indexed} content-hash index rows`
          })
        )
      }
      const onDisk = yield* Effect.try({ try: () => usage(root).size, catch: failure("du: walk") })
      const totals = kinds.map((kind) => {
        const of = records.filter((r) => r.kind === kind)
        return { kind, count: of.length, size: of.reduce((n, r) => n + r.size, 0) }
      })
      return new UsageReport({ root, records, totals, onDisk, mappings, indexed, leases: yield* leases })
    }).pipe(Effect.withSpan("Lifecycle.du", { attributes: { root } }))

    const service: LifecycleService = { du, lease, use, leases }
    return service
  })
