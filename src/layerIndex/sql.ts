/**
 * The layer index in SQL: one table over any SqlClient (SQLite, PostgreSQL), created when
 * missing, in queries both run. The level is text (`""` for the default) so it can be part of the key.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Effect, Option, Schema } from "effect"
import { LayerEntry, LayerIndexError, type LayerIndexService } from "../LayerIndex.js"
import { chunks } from "../internal/chunks.js"
import { createConcurrently } from "../internal/createTable.js"
import { messageOf } from "../internal/messageOf.js"

/** `(diff_id, compression, level) → (blobsum, size, media_type)`. */
export const migration = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS layer_index (
    diff_id TEXT NOT NULL,
    compression TEXT NOT NULL,
    level TEXT NOT NULL,
    blobsum TEXT NOT NULL,
    size TEXT NOT NULL,
    media_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (diff_id, compression, level)
  )`
})

const Row = Schema.Struct({ blobsum: Schema.String, size: Schema.String, media_type: Schema.String })
const decodeRows = Schema.decodeUnknown(Schema.Array(Row))

const levelText = (level: number | undefined): string => (level === undefined ? "" : String(level))

/** The index on the SqlClient in context; its table is created when missing. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const failure = (op: string, diffId: string) => (cause: unknown) =>
    new LayerIndexError({ op, diffId, reason: messageOf(cause), cause })
  yield* createConcurrently(migration).pipe(Effect.mapError(failure("open", "")))

  const service: LayerIndexService = {
    lookup: (diffId, form) =>
      sql`SELECT blobsum, size, media_type FROM layer_index
          WHERE diff_id = ${diffId} AND compression = ${form.compression} AND level = ${levelText(form.level)}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.map(Option.flatMap((row) =>
          // a row that is not an entry is as good as none: the layer is made again
          Schema.decodeUnknownOption(LayerEntry)({
            diffId,
            compression: form.compression,
            ...(form.level === undefined ? {} : { level: form.level }),
            blobsum: row.blobsum,
            size: Number(row.size),
            mediaType: row.media_type
          })
        )),
        Effect.mapError(failure("lookup", diffId))
      ),
    record: (entry) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((now) =>
          sql`INSERT INTO layer_index (diff_id, compression, level, blobsum, size, media_type, created_at)
              VALUES (${entry.diffId}, ${entry.compression}, ${levelText(entry.level)}, ${entry.blobsum},
                      ${String(entry.size)}, ${entry.mediaType}, ${now})
              ON CONFLICT (diff_id, compression, level) DO NOTHING`
        ),
        Effect.asVoid,
        Effect.mapError(failure("record", entry.diffId))
      ),
    forget: (diffId, form) =>
      sql`DELETE FROM layer_index
          WHERE diff_id = ${diffId} AND compression = ${form.compression} AND level = ${levelText(form.level)}`.pipe(
        Effect.asVoid,
        Effect.mapError(failure("forget", diffId))
      ),
    named: (blobsums) =>
      Effect.forEach(chunks([...new Set(blobsums)], 500), (some) =>
        sql<{ blobsum: string }>`SELECT DISTINCT blobsum FROM layer_index WHERE ${sql.in("blobsum", some)}`).pipe(
        Effect.map((found) => new Set(found.flat().map((row) => row.blobsum))),
        Effect.mapError(failure("lookup of blobs", ""))
      )
  }
  return service
})
