/**
 * The blob mapping in SQL: one table over any SqlClient, in queries SQLite and PostgreSQL both
 * run; a batch of look-ups is one `SELECT … WHERE key IN (…)` per chunk of keys.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Effect, Option, Schema } from "effect"
import type { Backend } from "../BlobMapper.js"
import { BlobMapperError } from "../BlobMapper.js"
import { DiffPair } from "../DiffPair.js"
import * as BlobMapSchema from "./schema.js"
import { chunks } from "../internal/chunks.js"
import { createConcurrently } from "../internal/createTable.js"
import { messageOf } from "../internal/messageOf.js"

/** Keys per statement: well under SQLite's smallest limit on bound variables (999). */
export const chunkSize = 500

const Row = Schema.Struct({ key: Schema.String, diff_id: Schema.String, blobsum: Schema.String })
const decodeRows = Schema.decodeUnknown(Schema.Array(Row))
const decodePair = Schema.decodeUnknownOption(DiffPair)


/**
 * A backend on the SqlClient in context. Its table is created when missing, since the client
 * may be a user's database that never ran blobchain's migrations.
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const failure = (op: string, keys: ReadonlyArray<string>) => (cause: unknown) =>
    new BlobMapperError({ op, keys, reason: messageOf(cause), cause })

  yield* createConcurrently(BlobMapSchema.migration).pipe(Effect.mapError(failure("open", [])))

  const selectChunk = (keys: ReadonlyArray<string>) =>
    sql`SELECT key, diff_id, blobsum FROM blob_mappings WHERE key IN ${sql.in(keys)}`.pipe(
      Effect.flatMap(decodeRows),
      Effect.mapError(failure("get", keys))
    )

  const backend: Backend = {
    getMany: (keys) =>
      Effect.gen(function*() {
        // a Set, not Array.dedupe: that compares every pair, quadratic in the chain's length
        const unique = [...new Set(keys)]
        const rows = yield* Effect.forEach(chunks(unique, chunkSize), selectChunk)
        const found = new Map<string, DiffPair>()
        for (const row of rows.flat()) {
          const pair = decodePair({ diffId: row.diff_id, blobsum: row.blobsum })
          // a row that is not a pair is treated as missing: the caller recomputes and overwrites it
          if (Option.isSome(pair)) found.set(row.key, pair.value)
          else yield* Effect.logWarning(`blob mapping ${JSON.stringify(row.key)} holds no valid pair; ignored`)
        }
        return keys.map((key) => Option.fromNullable(found.get(key)))
      }),
    set: (key, pair) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((now) =>
          sql`INSERT INTO blob_mappings (key, diff_id, blobsum, updated_at)
              VALUES (${key}, ${pair.diffId}, ${pair.blobsum}, ${now})
              ON CONFLICT (key) DO UPDATE SET
                diff_id = excluded.diff_id, blobsum = excluded.blobsum, updated_at = excluded.updated_at`
        ),
        Effect.asVoid,
        Effect.mapError(failure("set", [key]))
      ),
    delete: (key) =>
      sql`DELETE FROM blob_mappings WHERE key = ${key}`.pipe(
        Effect.asVoid,
        Effect.mapError(failure("delete", [key]))
      )
  }
  return backend
})
