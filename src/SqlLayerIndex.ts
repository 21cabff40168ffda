/**
 * The layer index in SQL: the `layer_index` table of the SqlClient in context (SQLite,
 * PostgreSQL, …), created when missing (see `layerIndex/sql.ts`). One database shared by several
 * machines lets each find the layers the others made.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Layer } from "effect"
import { LayerIndex, type LayerIndexError } from "./LayerIndex.js"
import * as SqlBackend from "./layerIndex/sql.js"

/** The index on the SqlClient in context. */
export const make = SqlBackend.make

/** A layer index in the `layer_index` table of the SqlClient in context. */
export const layer: Layer.Layer<LayerIndex, LayerIndexError, SqlClient.SqlClient> = Layer.effect(LayerIndex, SqlBackend.make)
