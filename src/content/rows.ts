/**
 * A local content store's rows in the metadata database: each committed blob's times and labels.
 * The blob file is the truth for existence and size; a missing row only means no labels yet.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as NodeFs from "node:fs"
import { Effect, Schema } from "effect"
import * as ContentStore from "../ContentStore.js"
import type * as Digest from "../Digest.js"
import { labelTable } from "../internal/labelTable.js"
import { Millis } from "../internal/millis.js"
import { messageOf } from "../internal/messageOf.js"

// better-sqlite3 returns BIGINT as number, PostgreSQL as string
const ContentRow = Schema.Struct({ digest: Schema.String, created_at: Millis, updated_at: Millis })
const decodeContentRows = Schema.decodeUnknown(Schema.Array(ContentRow))
const JoinedRow = Schema.extend(ContentRow, Schema.Struct({ label_name: Schema.NullOr(Schema.String), label_value: Schema.NullOr(Schema.String) }))
const decodeJoinedRows = Schema.decodeUnknown(Schema.Array(JoinedRow))

/** Blobs' rows: times and labels by digest. */
export interface Rows {
  readonly times: ReadonlyMap<string, typeof ContentRow.Type>
  readonly labels: ReadonlyMap<string, Record<string, string>>
}

/** A database failure as the store's error. */
export const dbError = (op: string, subject: string) => (cause: SqlError | { readonly message: string }) =>
  new ContentStore.ContentStoreError({ op, subject, reason: `metadata database: ${messageOf(cause)}`, cause })

/** The row operations of a store over `sql`. */
export const makeRows = (sql: SqlClient.SqlClient) => {
  const labelRows = labelTable(sql, "content_labels", "digest")
  /** The rows of `digests` (all rows when undefined), in two queries whatever their number. */
  const rowsFor = (op: string, digests: ReadonlyArray<Digest.Digest> | undefined) =>
    Effect.gen(function*() {
      const none: Rows = { times: new Map(), labels: new Map() }
      if (digests !== undefined && digests.length === 0) return none
      const content = yield* (digests === undefined
        ? sql`SELECT digest, created_at, updated_at FROM content`
        : sql`SELECT digest, created_at, updated_at FROM content WHERE ${sql.in("digest", digests)}`).pipe(
          Effect.flatMap(decodeContentRows)
        )
      const labels = yield* labelRows.read(digests)
      const times = new Map(content.map((row) => [row.digest, row]))
      const rows: Rows = { times, labels }
      return rows
    }).pipe(Effect.mapError(dbError(op, digests?.[0] ?? "*")))

  // the file is the truth for existence and size; a missing row only means no labels yet
  const infoOf = (
    digest: Digest.Digest,
    stat: NodeFs.Stats,
    rows: Rows
  ) => {
    const row = rows.times.get(digest)
    return new ContentStore.Info({
      digest,
      size: stat.size,
      createdAt: new Date(row?.created_at ?? stat.mtimeMs),
      updatedAt: new Date(row?.updated_at ?? stat.mtimeMs),
      labels: rows.labels.get(digest) ?? {}
    })
  }

  /** The rows of one digest in one query (info is on every reuse check's path). */
  const rowsOf = (op: string, digest: Digest.Digest) =>
    sql`SELECT c.digest, c.created_at, c.updated_at, l.name AS label_name, l.value AS label_value
      FROM content c LEFT JOIN content_labels l ON l.digest = c.digest WHERE c.digest = ${digest}`.pipe(
      Effect.flatMap(decodeJoinedRows),
      Effect.map((joined): Rows => {
        const first = joined[0]
        const labels: Record<string, string> = {}
        for (const row of joined) if (row.label_name !== null && row.label_value !== null) labels[row.label_name] = row.label_value
        return {
          times: new Map(first === undefined ? [] : [[digest, first]]),
          labels: new Map(first === undefined ? [] : [[digest, labels]])
        }
      }),
      Effect.mapError(dbError(op, digest))
    )


  /** Merge labels into a blob's row, creating the row when an older crash left none. */
  const applyLabels = (op: string, digest: Digest.Digest, stat: NodeFs.Stats, labels: ContentStore.Labels) =>
    sql.withTransaction(Effect.gen(function*() {
      const now = Date.now()
      const created = Math.floor(stat.mtimeMs)
      yield* sql`INSERT INTO content (digest, size, created_at, updated_at)
        VALUES (${digest}, ${stat.size}, ${created}, ${now})
        ON CONFLICT (digest) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at`
      yield* labelRows.merge(digest, labels)
    })).pipe(Effect.mapError(dbError(op, digest)))

  /** The rows of a freshly published blob; labels merge with any a concurrent AlreadyExists applied. */
  const recordNew = (digest: Digest.Digest, size: number, labels: ContentStore.Labels) =>
    sql.withTransaction(Effect.gen(function*() {
      const now = Date.now()
      yield* sql`INSERT INTO content (digest, size, created_at, updated_at)
        VALUES (${digest}, ${size}, ${now}, ${now})
        ON CONFLICT (digest) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at`
      // an empty value deletes nothing here: labels another writer set meanwhile stay
      yield* labelRows.merge(digest, Object.fromEntries(Object.entries(labels).filter(([, value]) => value !== "")))
    })).pipe(Effect.mapError(dbError("commit", digest)))

  // labels go first: a crash in between leaves a blob without labels, never labels without a blob
  const deleteRows = (digest: Digest.Digest) =>
    sql.withTransaction(Effect.zipRight(
      labelRows.remove(digest),
      sql`DELETE FROM content WHERE digest = ${digest}`
    )).pipe(Effect.mapError(dbError("delete", digest)))

  /** {@link deleteRows} of many digests, in one transaction. */
  const deleteRowsOf = (digests: ReadonlyArray<Digest.Digest>) =>
    digests.length === 0 ? Effect.void : sql.withTransaction(Effect.zipRight(
      sql`DELETE FROM content_labels WHERE ${sql.in("digest", digests)}`,
      sql`DELETE FROM content WHERE ${sql.in("digest", digests)}`
    )).pipe(Effect.asVoid, Effect.mapError(dbError("delete", digests[0] ?? "*")))

  return { rowsFor, rowsOf, infoOf, applyLabels, recordNew, deleteRows, deleteRowsOf }
}

/** What {@link makeRows} gives. */
export type RowStore = ReturnType<typeof makeRows>
