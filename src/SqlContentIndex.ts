/**
 * The content-hash index in SQL: the `content_index` table of the SqlClient in context (SQLite,
 * PostgreSQL, …), created when missing (see `contentIndex/sql.ts`).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import { ContentIndex, type ContentIndexError, failure, make } from "./ContentIndex.js"
import * as SqlBackend from "./contentIndex/sql.js"

/** A content index in the `content_index` table of the SqlClient in context. */
export const layer: Layer.Layer<ContentIndex, ContentIndexError, SqlClient.SqlClient> = Layer.effect(
  ContentIndex,
  SqlBackend.make.pipe(Effect.mapError(failure("open")), Effect.map(make))
)
