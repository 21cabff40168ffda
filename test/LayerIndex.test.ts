/** Layer indexes: the conformance suite in memory and in SQLite (PostgreSQL: postgres.test.ts). */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Layer } from "effect"
import * as LayerIndex from "../src/LayerIndex.js"
import * as SqlLayerIndex from "../src/SqlLayerIndex.js"
import { layerIndexSuite } from "./conformance/layerIndex.js"

layerIndexSuite("layerMemory", LayerIndex.layerMemory)
layerIndexSuite("layerSql (SQLite)", SqlLayerIndex.layer.pipe(Layer.provide(SqliteClient.layer({ filename: ":memory:" }))))
