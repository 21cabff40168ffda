/**
 * The content index in SQL: one table over any SqlClient, in queries SQLite and PostgreSQL both
 * run. Numbers are decimal TEXT: nanosecond times exceed 2^53, and every engine keeps text exactly.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { type Backend, type IndexRecord, treeRecordsKept } from "../ContentIndex.js"
import * as Digest from "../Digest.js"
import { chunks } from "../internal/chunks.js"
import { createConcurrently } from "../internal/createTable.js"

/** Files per SELECT: well under SQLite's smallest limit on bound variables (999). */
export const chunkSize = 500

/** Files per SELECT, and rows per INSERT, in SQLite: given as one JSON array (one bound variable). */
export const jsonChunkSize = 16384

/** Records per INSERT: six values a row, so 960 bound variables, under the same limit. */
export const rowsPerInsert = 160

/**
 * `<dev>:<ino> → (size, mtime_ns, ctime_ns, read_at_ns, digest)`, and a tree's `stat → print`
 * digests with the order they were recorded in, created when missing.
 */
export const migration = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS tree_index (
    stat TEXT PRIMARY KEY,
    print TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
  )`
  yield* sql`CREATE INDEX IF NOT EXISTS tree_index_recorded ON tree_index (recorded_at_ms)`
  yield* sql`CREATE TABLE IF NOT EXISTS content_index (
    file TEXT PRIMARY KEY,
    size TEXT NOT NULL,
    mtime_ns TEXT NOT NULL,
    ctime_ns TEXT NOT NULL,
    read_at_ns TEXT NOT NULL,
    digest TEXT NOT NULL
  )`
})

// only the text bigint.toString writes: a hex or padded number would not round-trip
const decimal = /^-?(?:0|[1-9][0-9]*)$/
const file = /^(0|[1-9][0-9]*):(0|[1-9][0-9]*)$/

/**
 * The record a row holds, or `undefined` when it holds none (a field missing, not text, or not
 * as this module writes it). Checked by hand, not by a Schema: a tree's lookup decodes a row per
 * file, and a Schema's decoding was most of its time.
 */
export const recordOfRow = (row: unknown): IndexRecord | undefined => {
  if (typeof row !== "object" || row === null) return undefined
  const { file: name, size, mtime_ns, ctime_ns, read_at_ns, digest } = row as Record<string, unknown>
  const parts = typeof name === "string" ? file.exec(name) : null
  if (
    parts === null || typeof size !== "string" || typeof mtime_ns !== "string" || typeof ctime_ns !== "string" ||
    typeof read_at_ns !== "string" || typeof digest !== "string" || !decimal.test(size) || !decimal.test(mtime_ns) ||
    !decimal.test(ctime_ns) || !decimal.test(read_at_ns) || Digest.problem(digest) !== undefined
  ) return undefined
  return {
    key: { dev: BigInt(parts[1]!), ino: BigInt(parts[2]!), size: BigInt(size), mtimeNs: BigInt(mtime_ns), ctimeNs: BigInt(ctime_ns) },
    digest,
    readAtNs: BigInt(read_at_ns)
  }
}

// a record as the table's row, its keys in the columns' order (SQLite is given its values)
const rowOf = (record: IndexRecord) => ({
  file: `${record.key.dev}:${record.key.ino}`,
  size: record.key.size.toString(),
  mtime_ns: record.key.mtimeNs.toString(),
  ctime_ns: record.key.ctimeNs.toString(),
  read_at_ns: record.readAtNs.toString(),
  digest: record.digest
})

const fileOfRow = (row: unknown): string =>
  typeof row === "object" && row !== null && "file" in row ? JSON.stringify(row.file) : "?"

/**
 * A backend on the SqlClient in context. Its table is created when missing, since the client
 * may be a user's database that never ran blobchain's migrations.
 */
export const make: Effect.Effect<Backend<SqlError>, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* createConcurrently(migration)

  // SQLite takes a lookup's files, and a record's rows, as one JSON array (a statement per 16 384,
  // not one per 500 files or 160 rows); other engines as bound variables
  const json = sql.onDialectOrElse({ sqlite: () => true, orElse: () => false })

  const selectChunk = (files: ReadonlyArray<string>) =>
    json
      ? sql`SELECT file, size, mtime_ns, ctime_ns, read_at_ns, digest FROM content_index
            WHERE file IN (SELECT value FROM json_each(${JSON.stringify(files)}))`
      : sql`SELECT file, size, mtime_ns, ctime_ns, read_at_ns, digest FROM content_index WHERE file IN ${sql.in(files)}`

  const replacing = sql.literal(`ON CONFLICT (file) DO UPDATE SET
    size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns,
    read_at_ns = excluded.read_at_ns, digest = excluded.digest`)

  // in SQLite the rows are arrays in the columns' order (the WHERE keeps its parser from reading
  // ON CONFLICT as a join's)
  const insertChunk = (records: ReadonlyArray<IndexRecord>) =>
    json
      ? sql`INSERT INTO content_index (file, size, mtime_ns, ctime_ns, read_at_ns, digest)
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                   json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
            FROM json_each(${JSON.stringify(records.map((record) => Object.values(rowOf(record))))}) WHERE true
            ${replacing}`
      : sql`INSERT INTO content_index ${sql.insert(records.map(rowOf))} ${replacing}`

  const read = (files: NonEmptyReadonlyArray<string>) =>
    Effect.gen(function*() {
      const rows = yield* Effect.forEach(chunks(files, json ? jsonChunkSize : chunkSize), selectChunk)
      const records: Array<IndexRecord> = []
      for (const chunk of rows) {
        for (const row of chunk) {
          const record = recordOfRow(row)
          // a row that is not a record is treated as missing: the caller reads the file and overwrites it
          if (record !== undefined) records.push(record)
          else yield* Effect.logWarning(`content index row ${fileOfRow(row)} holds no valid record; ignored`)
        }
      }
      return records
    })

  const write = (records: NonEmptyReadonlyArray<IndexRecord>) =>
    Effect.forEach(chunks(records, json ? jsonChunkSize : rowsPerInsert), insertChunk, { discard: true })

  const readTree = (stat: string) =>
    sql<{ readonly print: unknown }>`SELECT print FROM tree_index WHERE stat = ${stat}`.pipe(
      Effect.map((rows) => (typeof rows[0]?.print === "string" ? rows[0].print : undefined))
    )

  // the most recent kept (and any recorded in the same millisecond as the oldest of them): two
  // steps of the index on recorded_at_ms, not a sort of the table
  const writeTree = (stat: string, digest: string) =>
    Effect.zipRight(
      sql`INSERT INTO tree_index ${sql.insert({ stat, print: digest, recorded_at_ms: Date.now() })}
          ON CONFLICT (stat) DO UPDATE SET print = excluded.print, recorded_at_ms = excluded.recorded_at_ms`,
      sql`DELETE FROM tree_index WHERE recorded_at_ms < (
            SELECT recorded_at_ms FROM tree_index ORDER BY recorded_at_ms DESC LIMIT 1 OFFSET ${treeRecordsKept - 1})`
    ).pipe(sql.withTransaction)

  return { read, write, readTree, writeTree }
})
