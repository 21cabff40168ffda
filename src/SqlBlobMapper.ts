/**
 * The blob mapper in SQL: the `blob_mappings` table of the SqlClient in context (SQLite,
 * PostgreSQL, …), one `SELECT … IN (…)` per batch of look-ups (see `blobmap/sql.ts`).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import { BlobMapper, type BlobMapperError, make } from "./BlobMapper.js"
import * as SqlBackend from "./blobmap/sql.js"

/** The backend on the SqlClient in context; its table is created when missing. */
export const backend = SqlBackend.make

/** A blob mapper in the `blob_mappings` table of the SqlClient in context. */
export const layer: Layer.Layer<BlobMapper, BlobMapperError, SqlClient.SqlClient> = Layer.effect(
  BlobMapper,
  Effect.map(SqlBackend.make, make)
)
