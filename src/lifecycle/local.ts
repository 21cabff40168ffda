/**
 * The lifecycle of a local state directory: its blobs and ingests from the content store, its
 * snapshots from the snapshotter, the database from its files and tables, and the directory's
 * blocks on disk counted once per inode (native snapshots share files with their parents).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as Statement from "@effect/sql/Statement"
import { Duration, Effect, Exit, Option, Schedule, Schema } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { ContentStore } from "../ContentStore.js"
import type { Digest } from "../Digest.js"
import {
  type Kind,
  LeaseInfo,
  LifecycleError,
  type LifecycleService,
  PruneBusy,
  PruneDecision,
  type PrunePolicy,
  PruneReport,
  UsageRecord,
  UsageReport
} from "../Lifecycle.js"
import { LayerIndex } from "../LayerIndex.js"
import { LabelUncompressed } from "../Oci.js"
import { Snapshotter } from "../Snapshotter.js"
import { usage } from "../fs/usage.js"
import { isRunning, self } from "../internal/owner.js"
import { messageOf } from "../internal/messageOf.js"
import { keepReserve, releaseReserve, reserveBytes, reserveName } from "./reserve.js"

const kinds: ReadonlyArray<Kind> = ["layer", "blob", "ingest", "snapshot", "database"]

const failure = (op: string) => (cause: unknown) =>
  new LifecycleError({ op, reason: messageOf(cause), cause })

// the rows of a table, or none when it does not exist (yet)
const countOf = (sql: SqlClient.SqlClient, table: string) =>
  sql.unsafe<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).pipe(
    Effect.map((rows) => Number(rows[0]?.n ?? 0)),
    Effect.catchAll(() => Effect.succeed(0))
  )

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

// why a record a prune did not remove stays
const keptBecause = (record: UsageRecord, policy: PrunePolicy, now: number, parentOfKept: boolean): string => {
  if (parentOfKept) return "the parent of a snapshot kept"
  if (policy.keepDuration !== undefined && now - record.lastUsed.getTime() <= policy.keepDuration) return "used within --keep-duration"
  if (policy.keepStorage !== undefined) return "fits under --keep-storage"
  return "no option asked for it"
}

/** Snapshots (records or infos) by the key of their parent. */
const childrenOf = <A extends { readonly parent?: string | undefined }>(snapshots: ReadonlyArray<A>): ReadonlyMap<string, ReadonlyArray<A>> => {
  const children = new Map<string, Array<A>>()
  for (const r of snapshots) {
    if (r.parent === undefined) continue
    const siblings = children.get(r.parent)
    if (siblings === undefined) children.set(r.parent, [r])
    else siblings.push(r)
  }
  return children
}

// records are made here from values already checked: their constructors skip validation (a
// state directory may hold a hundred thousand)

/** The lifecycle of the state directory `root` (its metadata database is the SqlClient in context). */
export const make = (root: string) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const snapshotter = yield* Snapshotter
    const sql = yield* SqlClient.SqlClient
    // several machines' layer index, when the directory is opened with one: du says which layers it names
    const layerIndex = Option.getOrUndefined(yield* Effect.serviceOption(LayerIndex))

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
            live: row.expires_at > now && isRunning(row.pid, row.pid_started)
          })
        )
      }),
      Effect.mapError(failure("leases"))
    )

    // the leases of processes that are gone, or past their expiry, are given back for them
    const clearDead = Effect.flatMap(leases, (all) => {
      const dead = all.filter((l) => !l.live).map((l) => l.id)
      return dead.length === 0 ? Effect.void : Effect.asVoid(sql`DELETE FROM leases WHERE ${sql.in("id", dead)}`)
    }).pipe(Effect.mapError(failure("leases")))

    /** A lease row of this process, `exclusive`: 0 shared, 2 an exclusive one waiting, 1 held. */
    const insertRow = (id: string, owner: string, expiry: Duration.DurationInput, exclusive: 0 | 1 | 2, when: Statement.Fragment) =>
      Effect.gen(function*() {
        const now = Date.now()
        const expires = now + Duration.toMillis(Duration.decode(expiry))
        const inserted = yield* sql<{ id: string }>`INSERT INTO leases (id, owner, pid, pid_started, created_at, expires_at, exclusive)
          SELECT ${id}, ${owner}, ${self.pid}, ${self.started}, ${now}, ${expires}, ${exclusive}
          WHERE ${when}
          RETURNING id`.pipe(Effect.mapError(failure(`lease for ${owner}`)))
        return inserted.length === 0
          ? undefined
          : new LeaseInfo({ id, owner, pid: self.pid, createdAt: new Date(now), expiresAt: new Date(expires), live: true })
      })

    /**
     * A shared lease, when no exclusive one is held or waiting; each a single statement, so two
     * processes cannot both get in. A process that holds a shared lease already takes another even
     * while an exclusive one waits: its work would otherwise wait for a prune that waits for it.
     * `undefined`: not now.
     */
    const tryShared = (id: string, owner: string, expiry: Duration.DurationInput) =>
      Effect.zipRight(
        clearDead,
        insertRow(id, owner, expiry, 0, sql`NOT EXISTS (SELECT 1 FROM leases WHERE exclusive = 1)
            AND (NOT EXISTS (SELECT 1 FROM leases WHERE exclusive = 2)
              OR EXISTS (SELECT 1 FROM leases WHERE exclusive = 0 AND pid = ${self.pid} AND pid_started = ${self.started}))`)
      )

    /**
     * The exclusive lease `waiting` waits as: held once no other lease is held and no exclusive
     * one waits since before it (first come, first served). `true`: held.
     */
    const tryExclusive = (waiting: LeaseInfo) =>
      Effect.zipRight(
        clearDead,
        sql<{ id: string }>`UPDATE leases SET exclusive = 1 WHERE id = ${waiting.id}
          AND NOT EXISTS (SELECT 1 FROM leases WHERE id <> ${waiting.id}
            AND (exclusive <> 2 OR created_at < ${waiting.createdAt.getTime()} OR (created_at = ${waiting.createdAt.getTime()} AND id < ${waiting.id})))
          RETURNING id`.pipe(
          Effect.map((rows) => rows.length > 0),
          Effect.mapError(failure(`lease for ${waiting.owner}`))
        )
      )

    /**
     * A lease, waited for until `patience` runs out (`undefined` then): a shared one, or an
     * exclusive one, which stands in line from the start so that shared ones taken after it wait
     * for it (a prune is not starved by builds that keep starting). Given back with the scope.
     */
    const take = (owner: string, expiry: Duration.DurationInput, exclusive: boolean, patience: Duration.DurationInput) => {
      const id = randomUUID()
      const wait = Effect.gen(function*() {
        const waiting = exclusive ? yield* insertRow(id, owner, expiry, 2, sql`1 = 1`) : undefined
        const attempt: Effect.Effect<LeaseInfo | undefined, LifecycleError> = waiting === undefined
          ? tryShared(id, owner, expiry)
          : Effect.map(tryExclusive(waiting), (held) => (held ? waiting : undefined))
        return yield* attempt.pipe(
          Effect.flatMap((got) => (got === undefined ? Effect.fail("busy" as const) : Effect.succeed(got))),
          Effect.retry({ while: (e) => e === "busy", schedule: Schedule.spaced("100 millis") }),
          Effect.timeoutTo({ duration: patience, onTimeout: () => undefined, onSuccess: (got) => got }),
          Effect.catchIf((e): e is "busy" => e === "busy", () => Effect.succeed(undefined))
        )
      })
      return Effect.acquireRelease(
        // the wait can be interrupted (a prune told to stop while it waits); out of patience,
        // failed or interrupted, whatever row it made goes (a lease taken as it was interrupted too)
        Effect.interruptible(wait).pipe(
          Effect.onExit((exit) =>
            Exit.isSuccess(exit) && exit.value !== undefined ? Effect.void : Effect.ignore(sql`DELETE FROM leases WHERE id = ${id}`)
          )
        ),
        // a lease that cannot be given back expires with this process
        (info) => info === undefined ? Effect.void : Effect.ignore(sql`DELETE FROM leases WHERE id = ${info.id}`)
      )
    }

    const lease = (owner: string, options: { readonly expiry?: Duration.DurationInput } = {}) =>
      take(owner, options.expiry ?? "24 hours", false, "10 minutes").pipe(
        Effect.flatMap((info) =>
          info === undefined
            ? Effect.fail(new LifecycleError({ op: `lease for ${owner}`, reason: "a prune has held the state directory for ten minutes" }))
            : Effect.succeed(info)
        )
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

    /** The report; `walk`: with the directory's blocks on disk (a walk of all of it, which a prune does without). */
    const report = (walk: boolean) => Effect.gen(function*() {
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
      const mapped = yield* sql<{ blobsum: string; n: number }>`SELECT blobsum, COUNT(*) AS n FROM blob_mappings GROUP BY blobsum`.pipe(
        Effect.map((rows) => new Map(rows.map((row) => [row.blobsum, Number(row.n)]))),
        // none when the mappings are kept elsewhere (a shared database) and the table was never made here
        Effect.catchAll(() => Effect.succeed(new Map<string, number>()))
      )
      const layers = blobs.filter((info) => info.labels[LabelUncompressed] !== undefined).map((info) => info.digest)
      // the shared index is an accelerator: when it cannot be read, du says nothing of it
      const shared = layerIndex === undefined || layers.length === 0 ? undefined : yield* layerIndex.named(layers).pipe(
        Effect.catchAll((error) => Effect.as(Effect.logWarning(`the shared layer index was not read: ${error.message}`), undefined))
      )
      const records: Array<UsageRecord> = []
      for (const info of blobs) {
        const layer = info.labels[LabelUncompressed] !== undefined
        const mappings = mapped.get(info.digest) ?? 0
        const inIndex = layer && shared !== undefined ? shared.has(info.digest) : undefined
        const held = [
          ...(mappings === 0 ? [] : [`named by ${mappings} blob mapping${mappings === 1 ? "" : "s"}`]),
          ...(inIndex === true ? ["named by the shared layer index"] : [])
        ]
        records.push(
          new UsageRecord({
            kind: layer ? "layer" : "blob",
            id: info.digest,
            size: info.size,
            createdAt: info.createdAt,
            updatedAt: info.updatedAt,
            ...usageOf("blob", info.digest, info.createdAt),
            ...(inIndex === undefined ? {} : { shared: inIndex }),
            ...(held.length === 0 ? {} : { held })
          }, true)
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
          }, true)
        )
      }
      const sizes = yield* Effect.forEach(snapshots, (info) => snapshotter.usage(info.key).pipe(Effect.mapError(failure(`du: snapshot ${info.key}`))), {
        concurrency: 4
      })
      const children = childrenOf(snapshots)
      snapshots.forEach((info, i) => {
        const over = children.get(info.key)?.length ?? 0
        records.push(
          new UsageRecord({
            kind: "snapshot",
            id: info.key,
            size: sizes[i]!.size,
            createdAt: info.createdAt,
            updatedAt: info.updatedAt,
            ...usageOf("snapshot", info.key, info.createdAt),
            ...(info.parent === undefined ? {} : { parent: info.parent }),
            ...(over === 0 ? {} : { held: [`the parent of ${over} snapshot${over === 1 ? "" : "s"}`] })
          }, true)
        )
      })
      const mappings = [...mapped.values()].reduce((n, count) => n + count, 0)
      const indexed = yield* countOf(sql, "content_index")
      const database = yield* Effect.try({
        try: () => {
          // the database's files, and the room kept for it on a full disk
          const files = fs.readdirSync(root).filter((name) => /^metadata\.db(-wal|-shm|-journal)?$/.test(name) || name === reserveName)
          const stats = files.map((name) => fs.statSync(NodePath.join(root, name)))
          return stats.length === 0 ? Option.none() : Option.some({
            reserved: files.includes(reserveName),
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
            size: database.value.size,
            createdAt: database.value.createdAt,
            updatedAt: database.value.updatedAt,
            lastUsed: database.value.updatedAt,
            uses: 0,
            detail: `${mappings} blob mappings, ${indexed} content-hash index rows` +
              (database.value.reserved ? `; ${reserveBytes / 1024 / 1024} MiB kept for a prune on a full disk` : "")
          }, true)
        )
      }
      const onDisk = walk ? yield* Effect.try({ try: () => usage(root).size, catch: failure("du: walk") }) : 0
      const totals = kinds.map((kind) => {
        const of = records.filter((r) => r.kind === kind)
        return { kind, count: of.length, size: of.reduce((n, r) => n + r.size, 0) }
      })
      return new UsageReport({ root, records, totals, onDisk, mappings, indexed, leases: yield* leases }, true)
    }).pipe(Effect.withSpan("Lifecycle.du", { attributes: { root } }))

    const du = report(true)

    /** What `policy` removes of `records` (the prunable ones), least recently used first, and why the rest stays. */
    const decide = (records: ReadonlyArray<UsageRecord>, policy: PrunePolicy, now: number) => {
      const kinds = new Set<string>(policy.kinds ?? ["layer", "blob", "ingest", "snapshot"])
      const prunable = records.filter((r) => kinds.has(r.kind)).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime())
      const reasons = new Map<UsageRecord, string | undefined>()
      const go = (r: UsageRecord) => reasons.set(r, undefined)
      if (policy.all === true) prunable.forEach(go)
      if (policy.keepDuration !== undefined) {
        for (const r of prunable) if (now - r.lastUsed.getTime() > policy.keepDuration!) go(r)
      }
      if (policy.keepStorage !== undefined) {
        // the ceiling holds whatever else keeps a record: the least recently used go until the rest fits
        let kept = prunable.filter((r) => !reasons.has(r)).reduce((n, r) => n + r.size, 0)
        for (const r of prunable) {
          if (kept <= policy.keepStorage) break
          if (reasons.has(r)) continue
          go(r)
          kept -= r.size
        }
      }
      // a snapshot goes only with all its children: one whose child stays, stays
      const children = childrenOf(records.filter((r) => r.kind === "snapshot"))
      const childKept = (r: UsageRecord) => (children.get(r.id) ?? []).some((c) => !reasons.has(c))
      for (let changed = true; changed;) {
        changed = false
        for (const r of prunable) {
          if (r.kind === "snapshot" && reasons.has(r) && childKept(r)) {
            reasons.delete(r)
            changed = true
          }
        }
      }
      return prunable.map((record) =>
        new PruneDecision({
          record,
          removed: reasons.has(record),
          ...(reasons.has(record) ? {} : { reason: keptBecause(record, policy, now, record.kind === "snapshot" && childKept(record)) })
        }, true)
      )
    }

    const prune = (policy: PrunePolicy) =>
      Effect.gen(function*() {
        // a dry run changes nothing and holds nothing
        if (policy.dryRun !== true) {
          // room for the database's writes on a full disk (see reserve.ts): made again at the end
          releaseReserve(root)
          yield* Effect.addFinalizer(() => Effect.sync(() => keepReserve(root)))
          const held = yield* take("prune", "1 hour", true, policy.patience ?? "10 minutes")
          if (held === undefined) {
            const running = (yield* leases).filter((l) => l.live && l.owner !== "prune").length
            return yield* new PruneBusy({ leases: running })
          }
        }
        const found = yield* report(false)
        const decisions = decide(found.records, policy, Date.now())
        const removed = decisions.filter((d) => d.removed).map((d) => d.record)
        let mappings = 0
        if (policy.dryRun !== true) {
          // children before parents
          const snapshotByKey = new Map(found.records.filter((r) => r.kind === "snapshot").map((r) => [r.id, r]))
          const depth = (r: UsageRecord): number => {
            const up = r.parent === undefined ? undefined : snapshotByKey.get(r.parent)
            return up === undefined ? 0 : 1 + depth(up)
          }
          const snapshots = removed.filter((r) => r.kind === "snapshot").sort((a, b) => depth(b) - depth(a))
          for (const r of snapshots) {
            yield* snapshotter.remove(r.id).pipe(Effect.mapError(failure(`prune: snapshot ${r.id}`)))
            yield* Effect.ignore(sql`DELETE FROM usage WHERE kind = 'snapshot' AND id = ${r.id}`)
          }
          for (const r of removed.filter((r) => r.kind === "ingest")) {
            // a writer outside any lease still holds it: it stays
            yield* store.abort(r.id).pipe(Effect.catchTags({ ContentLocked: () => Effect.void, IngestNotFound: () => Effect.void }), Effect.mapError(failure(`prune: ingest ${r.id}`)))
          }
          const blobs = removed.filter((r) => r.kind === "layer" || r.kind === "blob").map((r) => r.id as Digest)
          for (let at = 0; at < blobs.length; at += batch) {
            const ids = blobs.slice(at, at + batch)
            // the mappings naming the blobs first, in one transaction with their usage rows: a prune
            // cut short after it leaves blobs nothing names, never a name without its blob
            mappings += yield* sql.withTransaction(Effect.gen(function*() {
              const named = yield* sql<{ key: string }>`DELETE FROM blob_mappings WHERE ${sql.in("blobsum", ids)} RETURNING key`
              yield* sql`DELETE FROM usage WHERE kind = 'blob' AND ${sql.in("id", ids)}`
              return named.length
            })).pipe(Effect.mapError(failure(`prune: mappings of ${ids.length} blobs`)))
            yield* store.deleteMany(ids).pipe(Effect.mapError(failure(`prune: ${ids.length} blobs`)))
          }
          if (policy.all === true && (policy.kinds === undefined || policy.kinds.length === 4)) {
            // the content-hash index is a cache of what was read: all of it goes, and the file shrinks
            yield* Effect.ignore(sql`DELETE FROM content_index`)
            yield* Effect.ignore(sql.unsafe("VACUUM"))
            yield* Effect.ignore(sql.unsafe("PRAGMA wal_checkpoint(TRUNCATE)"))
          }
        }
        const size = (of: ReadonlyArray<PruneDecision>) => of.reduce((n, d) => n + d.record.size, 0)
        return new PruneReport({
          decisions,
          freed: size(decisions.filter((d) => d.removed)),
          kept: size(decisions.filter((d) => !d.removed)),
          mappings,
          dryRun: policy.dryRun === true
        }, true)
      }).pipe(Effect.scoped, Effect.withSpan("Lifecycle.prune"))

    const service: LifecycleService = { du, lease, use, leases, prune }
    return service
  })
