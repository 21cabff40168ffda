/**
 * Content indexes: the racy rule and stat keys, the conformance suite on the memory and SQLite
 * layers, then what only SQL can show (statements per chunk, surviving a reopen, bad rows).
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { recordingStatements } from "./support/statements.js"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Layer } from "effect"
import * as fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import * as ContentIndex from "../src/ContentIndex.js"
import * as Metadata from "../src/Metadata.js"
import { contentIndexSuite, digestOf, keyOf, recordOf } from "./conformance/contentIndex.js"
import * as SqlContentIndex from "../src/SqlContentIndex.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-content-index-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const stateDir = (root: string) => Metadata.layer({ root })
const fileDb = (root: string) => SqliteClient.layer({ filename: NodePath.join(root, "index.db") })
const sqlOn = (root: string) => SqlContentIndex.layer.pipe(Layer.provideMerge(stateDir(root)))

const second = 1_000_000_000n

describe("ContentIndex.trusted", () => {
  const key = { dev: 1n, ino: 2n, size: 3n, mtimeNs: 10n * second, ctimeNs: 20n * second }
  const readAt = (readAtNs: bigint, k = key) => ContentIndex.trusted({ key: k, digest: digestOf(0), readAtNs })

  it("needs both mtime and ctime more than one second before the read", () => {
    expect(readAt(21n * second + 1n)).toBe(true)
    expect(readAt(21n * second)).toBe(false)
    expect(readAt(20n * second)).toBe(false)
    expect(readAt(5n * second)).toBe(false)
    const mtimeLast = { ...key, mtimeNs: 30n * second }
    expect(readAt(31n * second + 1n, mtimeLast)).toBe(true)
    expect(readAt(31n * second, mtimeLast)).toBe(false)
  })

  it("holds beyond 2^53 ns, where a number would round", () => {
    const far = 2n ** 62n
    const k = { ...key, mtimeNs: far, ctimeNs: far }
    expect(readAt(far + second + 1n, k)).toBe(true)
    expect(readAt(far + second, k)).toBe(false)
  })
})

describe("ContentIndex.writtenRecord", () => {
  const at = (mtimeNs: bigint, ctimeNs: bigint) => ({ dev: 1n, ino: 2n, size: 3n, mtimeNs, ctimeNs })

  it("a file whose mtime was set back past the racy second: trusted, read after its ctime's second", () =>
    fc.assert(fc.property(
      fc.bigInt({ min: 0n, max: 2n ** 62n }),
      fc.bigInt({ min: second + 1n, max: 1000n * second }),
      fc.bigInt({ min: 0n, max: 10n * second }),
      (wroteAt, back, later) => {
        const key = at(wroteAt - back, wroteAt + later)
        const record = ContentIndex.writtenRecord(key, digestOf(0), wroteAt)
        expect(record).toBeDefined()
        expect(ContentIndex.trusted(record!)).toBe(true)
        // but not a moment earlier than that: what the racy rule asks of any record
        expect(ContentIndex.trusted({ ...record!, readAtNs: key.ctimeNs + second })).toBe(false)
      }
    )))

  it("a file whose mtime is within the racy second of its write: no record", () =>
    fc.assert(fc.property(
      fc.bigInt({ min: 2n * second, max: 2n ** 62n }),
      fc.bigInt({ min: 0n, max: second }),
      (wroteAt, back) => {
        expect(ContentIndex.writtenRecord(at(wroteAt - back, wroteAt), digestOf(0), wroteAt)).toBeUndefined()
      }
    )))
})

describe("ContentIndex.keyOf", () => {
  it("takes dev, ino, size and the nanosecond times of a bigint stat", () => {
    const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-content-index-key-"))
    try {
      const file = NodePath.join(dir, "f")
      fs.writeFileSync(file, "hello")
      const stat = fs.statSync(file, { bigint: true })
      expect(ContentIndex.keyOf(stat)).toEqual({
        dev: stat.dev,
        ino: stat.ino,
        size: 5n,
        mtimeNs: stat.mtimeNs,
        ctimeNs: stat.ctimeNs
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

contentIndexSuite("layerMemory", ContentIndex.layerMemory)

// a plain SQLite file, no migrations: the table is made when missing (and it opens in a third
// of a state directory's time, which counts at a fresh database per run)
contentIndexSuite(
  "layerSql (SQLite file)",
  Layer.unwrapScoped(Effect.map(tempRoot, (root) => SqlContentIndex.layer.pipe(Layer.provide(fileDb(root)))))
)


describe("SqlContentIndex.layer", () => {
  it.scoped("in SQLite, a lookup is one SELECT per 16 384 files, a record one INSERT per 16 384 rows, each given as one JSON array", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const ix = yield* ContentIndex.ContentIndex.pipe(Effect.provide(yield* Layer.build(sqlOn(root))))
      const keys = Array.from({ length: 20_000 }, (_, i) => keyOf(i))
      const [, inserts] = yield* recordingStatements(ix.record(keys.map((key) => recordOf(key, digestOf(String(key.ino))))))
      expect(inserts.map((s) => s.params)).toEqual([1, 1])
      expect(inserts.every((s) => /^\s*INSERT INTO "?content_index"?/i.test(s.sql) && /json_each/.test(s.sql) && /ON CONFLICT/i.test(s.sql))).toBe(true)

      // duplicates are asked for once
      const [found, selects] = yield* recordingStatements(ix.lookup([...keys, ...keys.slice(0, 100)]))
      expect(found.every((digest) => digest !== undefined)).toBe(true)
      expect(found.slice(20_000)).toEqual(found.slice(0, 100))
      expect(selects.map((s) => s.params)).toEqual([1, 1])
      expect(selects.every((s) => /^\s*SELECT .* FROM content_index\s+WHERE file IN \(SELECT value FROM json_each/i.test(s.sql))).toBe(true)

      const [, none] = yield* recordingStatements(Effect.zip(ix.lookup([]), ix.record([])))
      expect(none).toEqual([])
    }))

  it.scoped("records survive closing and reopening the database file", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const kept = recordOf(keyOf(1), digestOf("kept"))
      const bigKey = { dev: 2n ** 64n - 1n, ino: 2n ** 53n + 1n, size: 2n ** 53n + 3n, mtimeNs: 2n ** 62n, ctimeNs: 2n ** 62n + 7n }
      const big = recordOf(bigKey, digestOf("big"))
      const replaced = recordOf(keyOf(2), digestOf("old"))
      const replacement = recordOf({ ...keyOf(2), size: 99n }, digestOf("new"))
      yield* ContentIndex.ContentIndex.pipe(
        Effect.flatMap((ix) => ix.record([kept, big, replaced, replacement])),
        Effect.provide(sqlOn(root))
      )
      const got = yield* ContentIndex.ContentIndex.pipe(
        Effect.flatMap((ix) => ix.lookup([kept.key, big.key, replaced.key, replacement.key])),
        Effect.provide(sqlOn(root))
      )
      expect(got).toEqual([kept.digest, big.digest, undefined, replacement.digest])
      // the decimal text, not a float: exact in the file
      const rows = yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql<{ size: string }>`SELECT size FROM content_index WHERE file = ${`${big.key.dev}:${big.key.ino}`}`),
        Effect.provide(stateDir(root))
      )
      expect(rows).toEqual([{ size: (2n ** 53n + 3n).toString() }])
    }))

  it.scoped("a row that is not a record reads as missing and is overwritten by record", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const ctx = yield* Layer.build(sqlOn(root))
      const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctx))
      const ix = yield* ContentIndex.ContentIndex.pipe(Effect.provide(ctx))
      const good = recordOf(keyOf(1), digestOf("good"))
      yield* ix.record([good])
      const bad = [keyOf(2), keyOf(3), keyOf(4), keyOf(5)]
      const row = (key: ContentIndex.StatKey) => ({
        file: `${key.dev}:${key.ino}`,
        size: key.size.toString(),
        mtime_ns: key.mtimeNs.toString(),
        ctime_ns: key.ctimeNs.toString(),
        read_at_ns: (key.ctimeNs + 5n * second).toString()
      })
      yield* sql`INSERT INTO content_index ${sql.insert([
        { ...row(keyOf(2)), digest: "md5:nonsense" },
        { ...row(keyOf(3)), digest: digestOf(3), size: "0x1e" },
        { ...row(keyOf(4)), digest: digestOf(4), read_at_ns: "soon" },
        { ...row(keyOf(5)), digest: digestOf(5), mtime_ns: " 1" }
      ])}`
      expect(yield* ix.lookup([good.key, ...bad])).toEqual([good.digest, undefined, undefined, undefined, undefined])
      yield* ix.record(bad.map((key) => recordOf(key, digestOf(`fixed ${key.ino}`))))
      expect(yield* ix.lookup(bad)).toEqual(bad.map((key) => digestOf(`fixed ${key.ino}`)))
    }))

  it.scoped("opening again on a database that has the table keeps its rows", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const db = yield* Layer.build(stateDir(root))
      const once = SqlContentIndex.layer.pipe(Layer.provide(Layer.succeedContext(db)))
      const record = recordOf(keyOf(1), digestOf(1))
      yield* ContentIndex.ContentIndex.pipe(Effect.flatMap((ix) => ix.record([record])), Effect.provide(once))
      const got = yield* ContentIndex.ContentIndex.pipe(Effect.flatMap((ix) => ix.lookup([record.key])), Effect.provide(once))
      expect(got).toEqual([record.digest])
    }))
})
