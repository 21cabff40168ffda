/** Tables of a state directory's lifecycle in the metadata database: usage records and leases. */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * `usage`: when each blob or snapshot was last used, and how often (a row appears at first use);
 * `leases`: the work running on the state directory, each with its owner process (its pid and
 * start time, so a pid used again is not taken for it) and an expiry; an exclusive one (a prune)
 * is taken only when no other is held, and no other is taken while it is.
 */
export const migration = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE usage (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    last_used_at BIGINT NOT NULL,
    uses INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
  )`
  yield* sql`CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    exclusive INTEGER NOT NULL DEFAULT 0
  )`
})
