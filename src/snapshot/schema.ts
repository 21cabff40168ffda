/** Tables of the snapshotters in the metadata database. */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/** One row a snapshot (key, parent, kind, times), labels beside it. */
export const migration = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE snapshots (
    key TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    parent TEXT,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  )`
  yield* sql`CREATE INDEX snapshots_parent ON snapshots (parent)`
  yield* sql`CREATE TABLE snapshot_labels (
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, name)
  )`
})
