/** The blob mapping table: portable SQL, so any SqlClient (SQLite, PostgreSQL) can hold it. */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/** `key → (diff_id, blobsum)`. */
export const migration = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS blob_mappings (
    key TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    blobsum TEXT NOT NULL,
    updated_at BIGINT NOT NULL
  )`
})
