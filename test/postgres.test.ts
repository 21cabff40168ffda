/**
 * The SQL backends on a real PostgreSQL server (started by the test, see support/postgres.ts):
 * the same conformance suites the SQLite backends pass, so one database can serve several
 * machines. The queries are the SQLite ones: portable SQL, tables created when missing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, Option } from "effect"
import * as BlobMapper from "../src/BlobMapper.js"
import * as SqlBlobMapper from "../src/SqlBlobMapper.js"
import * as SqlContentIndex from "../src/SqlContentIndex.js"
import { blobMapperSuite, pairOf } from "./conformance/blobMapper.js"
import { contentIndexSuite } from "./conformance/contentIndex.js"
import { layerIndexSuite } from "./conformance/layerIndex.js"
import * as SqlLayerIndex from "../src/SqlLayerIndex.js"
import { freshDatabase, layerFresh } from "./support/postgres.js"
import * as PgClient from "@effect/sql-pg/PgClient"

blobMapperSuite(
  "layerSql (PostgreSQL)",
  SqlBlobMapper.layer.pipe(Layer.provide(layerFresh)),
  Effect.flatMap(Layer.build(layerFresh), (db) => SqlBlobMapper.backend.pipe(Effect.provide(db)))
)

contentIndexSuite("layerSql (PostgreSQL)", SqlContentIndex.layer.pipe(Layer.provide(layerFresh)))

layerIndexSuite("layerSql (PostgreSQL)", SqlLayerIndex.layer.pipe(Layer.provide(layerFresh)))

describe("SqlBlobMapper.layer on PostgreSQL", () => {
  it.scoped("two clients of one database (two machines) see each other's mappings", () =>
    Effect.gen(function*() {
      const { name, port } = yield* freshDatabase
      const client = () =>
        SqlBlobMapper.layer.pipe(Layer.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name })))
      const one = yield* Layer.build(client())
      const two = yield* Layer.build(client())
      yield* BlobMapper.BlobMapper.pipe(Effect.flatMap((m) => m.set("ref", pairOf(1))), Effect.provide(one))
      const seen = yield* BlobMapper.BlobMapper.pipe(Effect.flatMap((m) => m.get("ref")), Effect.provide(two))
      expect(seen).toEqual(Option.some(pairOf(1)))
    }))

  it.scoped("its table is the one a user's database gets: created when missing, in the user's schema", () =>
    Effect.gen(function*() {
      const db = yield* Layer.build(layerFresh)
      yield* SqlBlobMapper.layer.pipe(Layer.build, Effect.provide(db))
      const tables = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`).pipe(
          Effect.provide(db)
        )
      expect(tables.map((t) => t.table_name)).toEqual(["blob_mappings"])
    }))
})
