/**
 * Blob mappers: the conformance suite on the memory and SQL layers, then what only SQL can show
 * (statements per batch, surviving a reopen, a second process, rows that are not pairs).
 */
import { describe, expect, it } from "@effect/vitest"
import { recordingStatements } from "./support/statements.js"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Layer, Option } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import * as BlobMapper from "../src/BlobMapper.js"
import * as Metadata from "../src/Metadata.js"
import { blobMapperSuite, pairOf } from "./conformance/blobMapper.js"
import * as SqlBlobMapper from "../src/SqlBlobMapper.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-blobmap-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const stateDir = (root: string) => Metadata.layer({ root })
const memoryDb = () => SqliteClient.layer({ filename: ":memory:" })

blobMapperSuite(
  "layerMemory",
  BlobMapper.layerMemory,
  Effect.sync(() => BlobMapper.memoryBackend())
)

blobMapperSuite(
  "layerSql (SQLite state directory)",
  Layer.unwrapScoped(Effect.map(tempRoot, (root) => SqlBlobMapper.layer.pipe(Layer.provide(stateDir(root))))),
  Effect.gen(function*() {
    const root = yield* tempRoot
    const db = yield* Layer.build(stateDir(root))
    return yield* SqlBlobMapper.backend.pipe(Effect.provide(db))
  })
)

blobMapperSuite(
  "layerSql (plain SQLite client, no migrations)",
  SqlBlobMapper.layer.pipe(Layer.provide(memoryDb())),
  Effect.gen(function*() {
    const db = yield* Layer.build(memoryDb())
    return yield* SqlBlobMapper.backend.pipe(Effect.provide(db))
  })
)


const selects = (statements: ReadonlyArray<{ sql: string; params: number }>) =>
  statements.filter((s) => /^\s*SELECT/i.test(s.sql) && s.sql.includes("blob_mappings"))

const child = (args: ReadonlyArray<string>) =>
  Effect.async<string, Error>((resume) => {
    const proc = execFile(
      NodePath.join("node_modules", ".bin", "vite-node"),
      [NodePath.join("test", "support", "blobMapperChild.ts"), ...args],
      { timeout: 240_000 },
      (error, stdout, stderr) => resume(error === null ? Effect.succeed(stdout) : Effect.fail(new Error(`${error.message}\n${stderr}`)))
    )
    return Effect.sync(() => proc.kill())
  })

describe("SqlBlobMapper.layer", () => {
  it.effect("a batch of gets is one SELECT … IN (…); big batches are chunked", () =>
    Effect.gen(function*() {
      const m = yield* BlobMapper.BlobMapper
      const keys = Array.from({ length: 1234 }, (_, i) => `ref-${i}`)
      yield* Effect.forEach(keys.slice(0, 30), (key) => m.set(key, pairOf(key)), { discard: true })

      const [few, fewStatements] = yield* recordingStatements(
        Effect.forEach(keys.slice(0, 20), m.get, { batching: true, concurrency: "unbounded" })
      )
      expect(few.every(Option.isSome)).toBe(true)
      expect(selects(fewStatements)).toHaveLength(1)
      expect(fewStatements).toHaveLength(1)
      expect(selects(fewStatements)[0]?.sql).toMatch(/WHERE key IN \(\?(,\?){19}\)/)

      const [many, manyStatements] = yield* recordingStatements(m.getMany(keys))
      expect(many.filter(Option.isSome)).toHaveLength(30)
      expect(selects(manyStatements).map((s) => s.params)).toEqual([500, 500, 234])
    }).pipe(Effect.provide(SqlBlobMapper.layer.pipe(Layer.provide(memoryDb())))))

  it.scoped("mappings survive closing and reopening the state directory's database", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const layer = SqlBlobMapper.layer.pipe(Layer.provide(stateDir(root)))
      yield* Effect.gen(function*() {
        const m = yield* BlobMapper.BlobMapper
        yield* m.set("kept", pairOf("kept"))
        yield* m.set("gone", pairOf("gone"))
        yield* m.delete("gone")
      }).pipe(Effect.provide(layer))
      const got = yield* BlobMapper.BlobMapper.pipe(
        Effect.flatMap((m) => m.getMany(["kept", "gone"])),
        Effect.provide(layer)
      )
      expect(got).toEqual([Option.some(pairOf("kept")), Option.none()])
    }))

  it.scopedLive("a second process sees this process's mappings and this one sees its writes", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const db = yield* Layer.build(SqlBlobMapper.layer.pipe(Layer.provide(stateDir(root))))
      const m = Layer.succeedContext(db)
      yield* BlobMapper.BlobMapper.pipe(Effect.flatMap((s) => s.set("from-parent", pairOf("p"))), Effect.provide(m))
      const out = yield* child([NodePath.join(root, Metadata.filename), "get", "from-parent", "nothing", "set", "from-child=c"])
      expect(JSON.parse(out)).toEqual([[pairOf("p").diffId, pairOf("p").blobsum], null])
      // the parent's connection stayed open throughout
      const got = yield* BlobMapper.BlobMapper.pipe(Effect.flatMap((s) => s.get("from-child")), Effect.provide(m))
      expect(got).toEqual(Option.some(pairOf("c")))
    }))

  it.effect("a row that is not a valid pair reads as missing and is overwritten by set", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const m = yield* BlobMapper.BlobMapper
      yield* sql`INSERT INTO blob_mappings (key, diff_id, blobsum, updated_at) VALUES ('bad', 'md5:xyz', 'nonsense', 0)`
      expect(yield* m.getMany(["bad"])).toEqual([Option.none()])
      yield* m.set("bad", pairOf("fixed"))
      expect(yield* m.get("bad")).toEqual(Option.some(pairOf("fixed")))
    }).pipe(Effect.provide(SqlBlobMapper.layer.pipe(Layer.provideMerge(memoryDb())))))

  it.effect("building the layer again on a database that has the table keeps its rows", () =>
    Effect.gen(function*() {
      const db = yield* Layer.build(memoryDb())
      const once = SqlBlobMapper.layer.pipe(Layer.provide(Layer.succeedContext(db)))
      yield* BlobMapper.BlobMapper.pipe(Effect.flatMap((m) => m.set("x", pairOf(1))), Effect.provide(once))
      const got = yield* BlobMapper.BlobMapper.pipe(Effect.flatMap((m) => m.get("x")), Effect.provide(once))
      expect(got).toEqual(Option.some(pairOf(1)))
    }).pipe(Effect.scoped))
})
