/**
 * The SQL backends on a real PostgreSQL server (started by the test, see support/postgres.ts):
 * the same conformance suites the SQLite backends pass, so one database can serve several
 * machines. The queries are the SQLite ones: portable SQL, tables created when missing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Exit, Fiber, Layer, Option, Schedule, Scope } from "effect"
import { spawn } from "node:child_process"
import { LayerLock } from "../src/LayerLock.js"
import * as SqlLayerLock from "../src/SqlLayerLock.js"
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

describe("tables made when missing, on PostgreSQL", () => {
  it.scopedLive("by many clients opening one new database at once: every one opens", () =>
    Effect.gen(function*() {
      const { name, port } = yield* freshDatabase
      const client = () =>
        Layer.mergeAll(SqlBlobMapper.layer, SqlLayerIndex.layer, SqlContentIndex.layer).pipe(
          Layer.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name }))
        )
      const opened = yield* Effect.forEach(Array.from({ length: 8 }, client), (layer) => Effect.either(Layer.build(layer)), {
        concurrency: "unbounded"
      })
      expect(opened.filter((o) => o._tag === "Left")).toEqual([])
    }))
})

describe("SqlLayerLock on PostgreSQL", () => {
  const lockOn = (port: number, name: string, options: SqlLayerLock.SqlLayerLockOptions = {}) =>
    SqlLayerLock.layer({ interval: "20 millis", ...options }).pipe(
      Layer.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name }))
    )
  const holdIn = (layer: Layer.Layer<LayerLock, unknown>, name: string) =>
    Effect.flatMap(LayerLock, (lock) => lock.hold(name)).pipe(Effect.provide(layer))

  it.scopedLive("one holder at a time: a second waits until the first's scope closes, one past its patience goes on", () =>
    Effect.gen(function*() {
      const { name, port } = yield* freshDatabase
      const one = yield* Layer.build(lockOn(port, name))
      const two = lockOn(port, name)
      const firstScope = yield* Scope.make()
      expect(yield* holdIn(Layer.succeedContext(one), "layer-a").pipe(Scope.extend(firstScope))).toBe(true)
      // another name is free meanwhile; the same one is not, past a short patience
      expect(yield* Effect.scoped(holdIn(two, "layer-b"))).toBe(true)
      expect(yield* Effect.scoped(holdIn(lockOn(port, name, { patience: "300 millis" }), "layer-a"))).toBe(false)
      const waiter = yield* Effect.fork(Effect.scoped(holdIn(two, "layer-a")))
      yield* Effect.sleep("200 millis")
      expect(waiter.unsafePoll()).toBeNull()
      yield* Scope.close(firstScope, Exit.void)
      expect(yield* Fiber.join(waiter).pipe(Effect.timeout("60 seconds"))).toBe(true)
    }))

  it.scopedLive("a holder killed with kill -9 releases the lock: the waiter takes it", () =>
    Effect.gen(function*() {
      const { name, port } = yield* freshDatabase
      const lockName = "layer-killed"
      // a session that took the lock and is idle, as a build's is while it makes the layer: the
      // server sees its client gone at once (a busy backend would notice only when it next talks)
      const holder = spawn("psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", name, "-v", "ON_ERROR_STOP=1"], {
        stdio: ["pipe", "ignore", "ignore"]
      })
      holder.stdin.write(`SELECT pg_advisory_lock(hashtextextended('${lockName}', 0));\n`)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.kill("SIGKILL")))
      const held = Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ n: string }>`SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted`).pipe(
          Effect.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name })),
          Effect.map((rows) => Number(rows[0]!.n))
        )
      // wait for psql to hold it (bounded: a broken psql fails the test, never hangs it)
      yield* held.pipe(Effect.repeat({ until: (n) => n > 0, schedule: Schedule.spaced("50 millis") }), Effect.timeout("60 seconds"))
      const waiter = yield* Effect.fork(Effect.scoped(holdIn(lockOn(port, name), lockName)))
      yield* Effect.sleep("200 millis")
      expect(waiter.unsafePoll()).toBeNull()
      holder.kill("SIGKILL")
      expect(yield* Fiber.join(waiter).pipe(Effect.timeout("60 seconds"))).toBe(true)
    }))
})
