/** Tables of the local content store in the metadata database. */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/** Committed blobs' times and labels; the blob file itself is the truth for size and bytes. */
export const migration = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE content (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  )`
  yield* sql`CREATE TABLE content_labels (
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (digest, name)
  )`
})
