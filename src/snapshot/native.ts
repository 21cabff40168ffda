/**
 * The native snapshotter: one directory per snapshot under `root/snapshots/<id>/fs`, each child
 * a full copy of its parent's tree; records and labels in the metadata database. The records,
 * labels and removal rules are shared with other layouts of a snapshot directory ({@link Layout}).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Effect, Option, Schema } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Mount from "../Mount.js"
import type { Mount as MountData } from "../Mount.js"
import type { Kind, Labels, SnapshotOptions, SnapshotterService } from "../Snapshotter.js"
import {
  InvalidSnapshotState,
  SnapshotExists,
  SnapshotHasChildren,
  SnapshotInfo,
  SnapshotNotFound,
  SnapshotterError,
  Usage
} from "../Snapshotter.js"
import * as Tree from "../fs/copy.js"
import { removeTreeInSteps } from "../fs/remove.js"
import { usage } from "../fs/usage.js"
import { labelTable } from "../internal/labelTable.js"
import { orphaned, ownerFile, writeOwner } from "./owner.js"
import { Millis } from "../internal/millis.js"
import { messageOf } from "../internal/messageOf.js"

/** Where the snapshots live and how trees are copied. */
export interface NativeOptions {
  /** The state directory; snapshots go to `root/snapshots/`. */
  readonly root: string
  /** `auto` (the default) uses GNU cp when present, else the Node walk; see {@link Tree.CopyEngine}. */
  readonly copy?: Tree.CopyEngine | "auto"
}

// PostgreSQL hands BIGINT back as text, SQLite as a number

const Row = Schema.Struct({
  key: Schema.String,
  id: Schema.String,
  parent: Schema.NullOr(Schema.String),
  kind: Schema.Literal("active", "view", "committed"),
  created_at: Millis,
  updated_at: Millis
})
type Row = typeof Row.Type

const decodeRows = Schema.decodeUnknown(Schema.Array(Row))
const JoinedRow = Schema.extend(Row, Schema.Struct({ label_name: Schema.NullOr(Schema.String), label_value: Schema.NullOr(Schema.String) }))
const decodeJoinedRows = Schema.decodeUnknown(Schema.Array(JoinedRow))

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Run a synchronous file operation, failing with a SnapshotterError naming `op` and `key`. */
export const io = <A>(op: string, key: string, f: () => A) =>
  Effect.try({ try: f, catch: (cause) => new SnapshotterError({ op, key, reason: reasonOf(cause), cause }) })

/**
 * What a kind of snapshotter decides about a snapshot's directory `root/snapshots/<id>/`: what a
 * new one holds, and the mounts that show it. Records, labels and removal are the same for all.
 */
export interface Layout {
  /**
   * Fill the staging directory of a new snapshot (it exists, empty); `parentDir` is the parent's
   * snapshot directory; `replaceOnly` is {@link SnapshotOptions.replaceOnly} of a `prepare`.
   * A failure, or interruption, is cleaned up by the caller.
   */
  readonly populate: (
    op: string,
    key: string,
    staging: string,
    parentDir: string | undefined,
    replaceOnly: boolean
  ) => Effect.Effect<void, SnapshotterError>
  /** The mounts of a snapshot of `kind`: `dirs` are its snapshot directory then its ancestors', nearest first. */
  readonly mounts: (kind: Kind, dirs: ReadonlyArray<string>) => ReadonlyArray<MountData>
  /** Whether {@link mounts} looks past `dirs[0]` (else the ancestors are not looked up). */
  readonly usesAncestors: boolean
}

/** Delete the tree at `path` a few thousand entries at a time (see {@link removeTreeInSteps}). */
const removeTree = (op: string, key: string, path: string) =>
  removeTreeInSteps(path).pipe(
    Effect.mapError((error) => new SnapshotterError({ op, key, reason: `delete: ${error.message}`, cause: error }))
  )

const copyTree = (engine: Tree.CopyEngine, op: string, key: string, from: string, to: string) =>
  Tree.copyTree(engine, from, to).pipe(
    Effect.mapError((error) => new SnapshotterError({ op, key, reason: `copy: ${error.message}`, cause: error }))
  )

/**
 * The parent's tree shared: its files hard-linked, its directories made anew. Where a link cannot
 * be made (another filesystem, a file's link limit, a protected file), a whole copy instead.
 */
const linkTree = (engine: Tree.CopyEngine, op: string, key: string, from: string, to: string) =>
  Tree.linkTree(engine, from, to).pipe(
    Effect.catchAll((error) =>
      Effect.logDebug(`snapshot ${key}: sharing the parent's files failed (${error.message}); copying them`).pipe(
        Effect.zipRight(removeTree(op, key, to)),
        Effect.zipRight(copyTree(engine, op, key, from, to))
      )
    )
  )

/**
 * The native layout: a new snapshot is a whole copy of its parent's tree, shown by a bind mount;
 * a snapshot prepared `replaceOnly` shares the parent's files instead (hard links).
 */
export const nativeLayout = (choice: Tree.CopyEngine | "auto"): Layout => ({
  populate: (op, key, staging, parentDir, replaceOnly) =>
    parentDir === undefined
      ? io(op, key, () => fs.mkdirSync(NodePath.join(staging, "fs"), { mode: 0o755 }))
      : (replaceOnly ? linkTree : copyTree)(
        // decided at the first copy: a build that copies nothing never asks which cp this is
        Tree.resolveEngine(choice),
        op,
        key,
        NodePath.join(parentDir, "fs"),
        NodePath.join(staging, "fs")
      ),
  mounts: (kind, dirs) => [Mount.bind(NodePath.join(dirs[0] ?? "", "fs"), kind !== "active")],
  usesAncestors: false
})

/** A database failure thrown past the SQL client (its error, or SQLite's own with its code). */
const isDatabaseDefect = (defect: unknown): boolean =>
  typeof defect === "object" && defect !== null &&
  ((defect as { readonly _tag?: unknown })._tag === "SqlError" || String((defect as { readonly code?: unknown }).code ?? "").startsWith("SQLITE_"))

/** The native snapshotter over the SqlClient in context (its tables already migrated). */
export const make = (options: NativeOptions) =>
  makeWithLayout(options.root, nativeLayout(options.copy ?? "auto"))

/** A snapshotter of the given layout on the state directory `root`, over the SqlClient in context. */
export const makeWithLayout = (root: string, layout: Layout) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const labelRows = labelTable(sql, "snapshot_labels", "key")
    const snapshotsDir = NodePath.join(root, "snapshots")

    const dbError = (op: string, key: string) => (cause: unknown) =>
      new SnapshotterError({ op, key, reason: `database: ${messageOf(cause)}`, cause })

    // trees of removed snapshots whose deletion was cut short (nothing refers to them), and
    // copies cut short by a crash; a younger copy may be another process's prepare in progress
    const leftovers = yield* io("open", root, () => {
      fs.mkdirSync(snapshotsDir, { recursive: true })
      const dayAgo = Date.now() - 24 * 60 * 60 * 1000
      return fs.readdirSync(snapshotsDir).filter((name) => {
        if (name.startsWith(".trash-")) return true
        if (!name.startsWith(".staging-")) return false
        // another process may have renamed it into place since the listing: then it is not there
        const stat = fs.statSync(NodePath.join(snapshotsDir, name), { throwIfNoEntry: false })
        return (stat?.mtimeMs ?? Infinity) < dayAgo
      }).map((name) => NodePath.join(snapshotsDir, name))
    })
    // a leftover that cannot be deleted costs disk space, nothing else: it never stops the open
    yield* Effect.forEach(leftovers, (path) =>
      removeTreeInSteps(path).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not delete the leftover snapshot tree ${path}: ${error.message}`))
      ), { discard: true })

    const dirOf = (id: string) => NodePath.join(snapshotsDir, id)
    const fsOf = (id: string) => NodePath.join(snapshotsDir, id, "fs")

    /** The snapshot directories of `key` and its ancestors, nearest first (none for no key). */
    const ancestorDirs = (op: string, key: string | undefined) =>
      key === undefined || !layout.usesAncestors
        ? Effect.succeed<ReadonlyArray<string>>([])
        : sql`WITH RECURSIVE chain (id, parent, depth) AS (
            SELECT id, parent, 0 FROM snapshots WHERE key = ${key}
            UNION ALL
            SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.key = c.parent
          ) SELECT id FROM chain ORDER BY depth`.pipe(
          Effect.flatMap(Schema.decodeUnknown(Schema.Array(Schema.Struct({ id: Schema.String })))),
          Effect.map((rows) => rows.map((r) => dirOf(r.id))),
          Effect.mapError(dbError(op, key))
        )

    const find = (op: string, key: string) =>
      sql`SELECT key, id, parent, kind, created_at, updated_at FROM snapshots WHERE key = ${key}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.mapError(dbError(op, key))
      )

    const get = (op: string, key: string) =>
      find(op, key).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new SnapshotNotFound({ key })),
          onSome: Effect.succeed
        }))
      )

    const toInfo = (row: Row, labels: Labels) =>
      new SnapshotInfo({
        key: row.key,
        ...(row.parent === null ? {} : { parent: row.parent }),
        kind: row.kind,
        labels,
        createdAt: new Date(row.created_at),
        updatedAt: new Date(row.updated_at)
      })

    // one query for the record and its labels: stat is on every ref's path
    const info = (op: string, key: string) =>
      sql`SELECT s.key, s.id, s.parent, s.kind, s.created_at, s.updated_at, l.name AS label_name, l.value AS label_value
        FROM snapshots s LEFT JOIN snapshot_labels l ON l.key = s.key WHERE s.key = ${key}`.pipe(
        Effect.flatMap(decodeJoinedRows),
        Effect.mapError(dbError(op, key)),
        Effect.flatMap((rows) => {
          const first = rows[0]
          if (first === undefined) return Effect.fail(new SnapshotNotFound({ key }))
          const labels: Record<string, string> = {}
          for (const row of rows) if (row.label_name !== null && row.label_value !== null) labels[row.label_name] = row.label_value
          return Effect.succeed(toInfo(first, labels))
        })
      )

    /** Merge labels into the record of `key`; an empty value deletes a label. */
    const writeLabels = (op: string, key: string, labels: Labels) =>
      labelRows.merge(key, labels).pipe(Effect.mapError(dbError(op, key)))

    // SQLite's deferred BEGIN takes the write lock at the first write; a transaction that read
    // first then fails at once (SQLITE_BUSY) when another process wrote meanwhile. A write first
    // takes the lock up front, as BEGIN IMMEDIATE would, so a concurrent writer is waited for.
    const lockForWrite = sql`UPDATE snapshots SET kind = kind WHERE 1 = 0`
    const transaction = <A, E extends { readonly _tag: string }>(op: string, key: string, effect: Effect.Effect<A, E>) =>
      sql.withTransaction(Effect.zipRight(lockForWrite, effect)).pipe(
        Effect.catchTag("SqlError", (e) => Effect.fail(dbError(op, key)(e))),
        // a commit or rollback the database cannot do (SQLITE_FULL on a full disk) is thrown
        // past the client: a failure of this step like any other
        Effect.catchSomeDefect((defect) => (isDatabaseDefect(defect) ? Option.some(Effect.fail(dbError(op, key)(defect))) : Option.none()))
      )

    /**
     * Fill a staging directory first, then record the snapshot and move the tree in place in one
     * transaction: a failure at any step leaves neither a record without a tree nor the reverse.
     */
    const create = (kind: "active" | "view", op: string, key: string, parent: string | undefined, opts?: SnapshotOptions) =>
      Effect.gen(function*() {
        if (Option.isSome(yield* find(op, key))) return yield* new SnapshotExists({ key })
        const checkParent = (p: string) =>
          get(op, p).pipe(
            Effect.filterOrFail(
              (row) => row.kind === "committed",
              (row) => new InvalidSnapshotState({ key: p, kind: row.kind, op: `${op} on` })
            )
          )
        const parentRow = parent === undefined ? undefined : yield* checkParent(parent)
        const id = randomBytes(16).toString("hex")
        const staging = NodePath.join(snapshotsDir, `.staging-${id}`)
        const final = dirOf(id)
        const cleanUp = Effect.zipRight(removeTree(op, key, staging), removeTree(op, key, final)).pipe(
          Effect.catchAll((error) => Effect.logWarning(`could not clean up snapshot directory ${staging}: ${error.message}`))
        )

        return yield* Effect.gen(function*() {
          yield* io(op, key, () => {
            fs.mkdirSync(staging, { mode: 0o700 })
            // whose it is while it is not committed: a process that dies leaves it to be swept
            writeOwner(staging)
          })
          const parentDir = parentRow === undefined ? undefined : dirOf(parentRow.id)
          yield* layout.populate(op, key, staging, parentDir, kind === "active" && opts?.replaceOnly === true)
          const now = yield* Clock.currentTimeMillis
          return yield* transaction(
            op,
            key,
            Effect.gen(function*() {
              // checked again: another fiber or process may have taken the key or removed the parent meanwhile
              if (Option.isSome(yield* find(op, key))) return yield* new SnapshotExists({ key })
              if (parent !== undefined) yield* checkParent(parent)
              yield* sql`INSERT INTO snapshots (key, id, parent, kind, created_at, updated_at)
                VALUES (${key}, ${id}, ${parent ?? null}, ${kind}, ${now}, ${now})`.pipe(
                Effect.mapError(dbError(op, key))
              )
              yield* writeLabels(op, key, opts?.labels ?? {})
              yield* io(op, key, () => fs.renameSync(staging, final))
              return layout.mounts(kind, [final, ...yield* ancestorDirs(op, parent)])
            })
          )
        }).pipe(Effect.onError(() => cleanUp))
      }).pipe(Effect.withSpan(`Snapshotter.${op}`, { attributes: { key, parent } }))

    const commit = (name: string, key: string, opts?: SnapshotOptions) =>
      transaction(
        "commit",
        key,
        Effect.gen(function*() {
          const row = yield* get("commit", key)
          if (row.kind !== "active") return yield* new InvalidSnapshotState({ key, kind: row.kind, op: "commit" })
          if (name !== key && Option.isSome(yield* find("commit", name))) {
            return yield* new SnapshotExists({ key: name })
          }
          const now = yield* Clock.currentTimeMillis
          yield* sql`UPDATE snapshots SET key = ${name}, kind = 'committed', updated_at = ${now} WHERE key = ${key}`.pipe(
            Effect.zipRight(sql`UPDATE snapshot_labels SET key = ${name} WHERE key = ${key}`),
            Effect.mapError(dbError("commit", key))
          )
          yield* writeLabels("commit", name, opts?.labels ?? {})
          // committed: nobody's alone any more
          yield* io("commit", key, () => fs.rmSync(NodePath.join(dirOf(row.id), ownerFile), { force: true }))
        })
      ).pipe(Effect.withSpan("Snapshotter.commit", { attributes: { name, key } }))

    const update = (key: string, labels: Labels) =>
      transaction(
        "update",
        key,
        Effect.gen(function*() {
          yield* get("update", key)
          const now = yield* Clock.currentTimeMillis
          yield* writeLabels("update", key, labels)
          yield* sql`UPDATE snapshots SET updated_at = ${now} WHERE key = ${key}`.pipe(
            Effect.mapError(dbError("update", key))
          )
          return yield* info("update", key)
        })
      ).pipe(Effect.withSpan("Snapshotter.update", { attributes: { key } }))

    /**
     * Forget the record and move the tree aside in one transaction, then delete the tree: a crash
     * leaves at most a `.trash-` directory, swept when the snapshotter next opens.
     */
    const remove = (key: string) =>
      Effect.gen(function*() {
        let moved: { readonly from: string; readonly to: string } | undefined
        yield* transaction(
          "remove",
          key,
          Effect.gen(function*() {
            const row = yield* get("remove", key)
            const children = yield* sql`SELECT key FROM snapshots WHERE parent = ${key} ORDER BY key`.pipe(
              Effect.flatMap(Schema.decodeUnknown(Schema.Array(Schema.Struct({ key: Schema.String })))),
              Effect.mapError(dbError("remove", key))
            )
            if (children.length > 0) {
              return yield* new SnapshotHasChildren({ key, children: children.map((c) => c.key) })
            }
            yield* labelRows.remove(key).pipe(
              Effect.zipRight(sql`DELETE FROM snapshots WHERE key = ${key}`),
              Effect.mapError(dbError("remove", key))
            )
            const from = dirOf(row.id)
            const to = NodePath.join(snapshotsDir, `.trash-${row.id}`)
            yield* io("remove", key, () => {
              if (fs.existsSync(from)) {
                fs.renameSync(from, to)
                moved = { from, to }
              }
            })
          })
        ).pipe(
          // the transaction failed after the tree moved: put it back beside its record
          Effect.onError(() =>
            moved === undefined ? Effect.void : io("remove", key, () => {
              if (moved !== undefined) fs.renameSync(moved.to, moved.from)
            }).pipe(Effect.ignore)
          ),
          // the record could not go (a full disk cannot take the database's journal): an
          // uncommitted snapshot's tree goes anyway, to give the space back; its record and
          // owner file stay, and the snapshot is swept once its process is gone
          Effect.tapError(() =>
            find("remove", key).pipe(
              Effect.flatMap((row) =>
                Option.isNone(row) || row.value.kind === "committed" ? Effect.void : io("remove", key, () => {
                  const dir = dirOf(row.value.id)
                  for (const name of fs.readdirSync(dir)) {
                    if (name !== ownerFile) fs.rmSync(NodePath.join(dir, name), { recursive: true, force: true })
                  }
                })
              ),
              Effect.ignore
            )
          )
        )
        if (moved !== undefined) {
          const trash = moved.to
          yield* removeTree("remove", key, trash).pipe(
            Effect.catchAll((error) => Effect.logWarning(`snapshot ${key} removed, its tree left at ${trash}`, error))
          )
        }
      }).pipe(Effect.withSpan("Snapshotter.remove", { attributes: { key } }))

    const walk = Effect.gen(function*() {
      const rows = yield* sql`SELECT key, id, parent, kind, created_at, updated_at FROM snapshots ORDER BY key`.pipe(
        Effect.flatMap(decodeRows),
        Effect.mapError(dbError("walk", ""))
      )
      const byKey = yield* labelRows.read(undefined).pipe(Effect.mapError(dbError("walk", "")))
      return rows.map((row) => toInfo(row, byKey.get(row.key) ?? {}))
    }).pipe(Effect.withSpan("Snapshotter.walk"))

    // active snapshots and views whose process is gone (killed mid-build): nothing will commit or
    // remove them but this; one that cannot be removed now is tried again at the next open
    const orphans = yield* sql`SELECT key, id, parent, kind, created_at, updated_at FROM snapshots WHERE kind <> 'committed'`.pipe(
      Effect.flatMap(decodeRows),
      Effect.map((rows) => rows.filter((row) => orphaned(NodePath.join(dirOf(row.id), ownerFile)))),
      Effect.mapError(dbError("open", ""))
    )
    yield* Effect.forEach(orphans, (row) =>
      remove(row.key).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not remove the snapshot ${row.key} a dead process left: ${error.message}`))
      ), { discard: true })

    const service: SnapshotterService = {
      prepare: (key, parent, opts) => create("active", "prepare", key, parent, opts),
      view: (key, parent, opts) => create("view", "view", key, parent, opts),
      mounts: (key) =>
        get("mounts", key).pipe(
          Effect.flatMap((row) =>
            Effect.map(
              ancestorDirs("mounts", row.parent ?? undefined),
              (ancestors) => layout.mounts(row.kind, [dirOf(row.id), ...ancestors])
            )
          ),
          Effect.withSpan("Snapshotter.mounts", { attributes: { key } })
        ),
      commit,
      stat: (key) => info("stat", key).pipe(Effect.withSpan("Snapshotter.stat", { attributes: { key } })),
      update,
      usage: (key) =>
        get("usage", key).pipe(
          Effect.flatMap((row) => io("usage", key, () => usage(fsOf(row.id)))),
          Effect.map((u) => new Usage(u)),
          Effect.withSpan("Snapshotter.usage", { attributes: { key } })
        ),
      remove,
      walk
    }
    return service
  })
