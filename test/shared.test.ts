/**
 * Blobchain.layerShared: blob mappings and the layer index on a database several machines share.
 * A build whose trees have other inodes and mtimes (a fresh checkout, another machine) hashes
 * each layer whose ref is not mapped and reuses a blob made before from the same bytes.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Context, Effect, Layer, Logger } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { BlobCache, Blobchain, Build, ContentStore, Digest, Oci, Progress, RegistryBlobCache } from "../src/index.js"
import * as zlib from "node:zlib"
import * as SqlClient from "@effect/sql/SqlClient"
import { freshDatabase, layerFresh } from "./support/postgres.js"
import { start as startPostgres, stop as stopPostgres } from "./support/pgServer.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain } from "./support/tools.js"
import { type Proxy, startProxy, startRegistry } from "./support/registry.js"
import { Registry } from "../src/index.js"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as net from "node:net"

const work = scratch("shared")
afterAll(() => work.remove())

const epoch = 1_000_000

// two trees, the second a change of the first
const trees = () => {
  const one = work.fresh("v1")
  write(one, "etc/app.conf", "version=1\n")
  write(one, "usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
  write(one, "usr/share/doc/readme", "x".repeat(100_000))
  const two = work.fresh("v2")
  execFileSync("cp", ["-a", "--", one, two])
  write(two, "etc/app.conf", "version=2\n")
  write(two, "usr/lib/new.so", "y".repeat(50_000))
  return [one, two]
}

// the same trees as a fresh checkout has them: new inodes, new mtimes
const checkout = (dirs: ReadonlyArray<string>) =>
  dirs.map((dir) => {
    const copy = work.fresh("checkout")
    execFileSync("cp", ["-r", "--preserve=mode", "--", dir, copy])
    execFileSync("sh", ["-c", `find "$1" -exec touch -h -d @${epoch + 12345} {} +`, "sh", copy])
    return copy
  })

/** Build `dirs` on `stack`, with the layer events it reported. */
const buildOn = (stack: Layer.Layer<Blobchain.Services, unknown>, dirs: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const events: Array<Progress.ProgressEvent["_tag"]> = []
    const built = yield* Build.build(dirs, { sourceDateEpoch: epoch }).pipe(
      Effect.provideService(Progress.Progress, { report: (event) => void events.push(event._tag) })
    )
    const blobs = yield* Effect.flatMap(ContentStore.ContentStore, (store) => store.walk())
    return { layers: built.image.layers.map((l) => l.digest), events, blobs: blobs.length }
  }).pipe(Effect.provide(stack))

// a docker-registry of the test's own, stopped with its scope
const scopedRegistry = Effect.acquireRelease(Effect.promise(() => startRegistry()), (r) => Effect.promise(r.stop))

// and the proxy in front of it that counts requests and injects faults
const proxiedRegistry = Effect.gen(function*() {
  const registry = yield* scopedRegistry
  const proxy = yield* Effect.acquireRelease(Effect.promise(() => startProxy(registry.port)), (p) => Effect.promise(p.stop))
  return { registry, proxy }
})

// the shared cache as the CLI's environment names it: a proxied registry and a fresh database
const sharedCacheForCli = Effect.gen(function*() {
  const { proxy } = yield* proxiedRegistry
  const { name, port } = yield* freshDatabase
  const env = {
    BLOBCHAIN_CACHE_DB: `postgres://postgres@127.0.0.1:${port}/${name}`,
    BLOBCHAIN_CACHE: `docker://${proxy.host}/team/cache`
  }
  return { proxy, env }
})

// `blobchain build` as one machine runs it: a state directory of its own, the chain's epoch, JSON out
const machineBuild = (dirs: ReadonlyArray<string>, out: string, more: ReadonlyArray<string> = []) =>
  ["build", ...dirs, "--state", path.join(work.fresh("state"), "s"), "--out", out, "--source-date-epoch", String(epoch), "--json", ...more]

// a database file standing for the one several machines share
const sharedDb = (file: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  return SqliteClient.layer({ filename: file })
}

describe("Blobchain.layerShared", () => {
  const databases = {
    SQLite: () => Effect.succeed(sharedDb(path.join(work.fresh("db"), "shared.db"))),
    PostgreSQL: () => Effect.map(Layer.memoize(layerFresh), (layer) => layer)
  }

  for (const [name, database] of Object.entries(databases)) {
  it.scopedLive(`a fresh checkout of the same trees reuses every layer: hashed, nothing compressed or written (${name})`, () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const db = yield* database()
      const stack = () => Blobchain.layerShared({ root: state }).pipe(Layer.provide(db))
      const dirs = trees()
      const first = yield* buildOn(stack(), dirs)
      expect(first.events.filter((e) => e === "LayerDone")).toHaveLength(2)
      const again = yield* buildOn(stack(), checkout(dirs))
      expect(again.layers).toEqual(first.layers)
      expect(again.events.filter((e) => e === "LayerDone")).toHaveLength(0)
      expect(again.events.filter((e) => e === "LayerReused")).toHaveLength(2)
      expect(again.blobs).toBe(first.blobs)
    }))
  }

  it.scopedLive("a database stopped under open connections: the build succeeds alone, and says so once", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(startPostgres)
      let stopped = false
      const stopOnce = Effect.sync(() => {
        if (!stopped) stopPostgres(server)
        stopped = true
      })
      yield* Effect.addFinalizer(() => stopOnce)
      const dirs = trees()
      const db = PgClient.layer({ host: "127.0.0.1", port: server.port, username: "postgres", database: "postgres" })
      const stack = yield* Layer.build(Blobchain.layerShared({ root: path.join(work.fresh("state"), "s") }).pipe(Layer.provide(db)))
      // the tables exist and the pool is open; then the server goes away
      yield* stopOnce
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
      const built = yield* buildOn(Layer.succeedContext(stack), dirs).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      expect(built.layers).toHaveLength(2)
      expect(built.events.filter((e) => e === "LayerDone")).toHaveLength(2)
      // the mapping's failure and the index's are each told once, whatever the number of layers
      expect(warnings.length).toBeGreaterThanOrEqual(1)
      expect(warnings.length).toBeLessThanOrEqual(3)
    }))

  it.live("a database whose tables cannot be made: the state directory alone, said in one warning", () =>
    Effect.gen(function*() {
      const file = path.join(work.fresh("db"), "read-only.db")
      // a database file of its own, then opened read-only
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`PRAGMA user_version = 1`).pipe(Effect.provide(sharedDb(file)))
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
      const stack = Blobchain.layerShared({ root: path.join(work.fresh("state"), "s") }).pipe(
        Layer.provide(SqliteClient.layer({ filename: file, readonly: true }))
      )
      const dirs = trees()
      const built = yield* buildOn(stack, dirs).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      expect(built.events.filter((e) => e === "LayerDone")).toHaveLength(2)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/^the shared cache cannot be used \(.*\): building alone$/)
      // alone means alone: the mappings are the state directory's, and the checkout's layers are made again
      const again = yield* buildOn(stack, dirs)
      expect(again.events.filter((e) => e === "LayerReused")).toHaveLength(2)
    }))

  it.live("without the index (layerLocal) the same checkout is diffed again, to the same bytes", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const dirs = trees()
      const first = yield* buildOn(Blobchain.layerLocal({ root: state }), dirs)
      const again = yield* buildOn(Blobchain.layerLocal({ root: state }), checkout(dirs))
      expect(again.layers).toEqual(first.layers)
      expect(again.events.filter((e) => e === "LayerDone")).toHaveLength(2)
    }))

  it.live("an index entry whose blob this machine does not have is not reused: the layer is made here, the same", () =>
    Effect.gen(function*() {
      const db = sharedDb(path.join(work.fresh("db"), "shared.db"))
      const dirs = trees()
      const first = yield* buildOn(Blobchain.layerShared({ root: path.join(work.fresh("a"), "s") }).pipe(Layer.provide(db)), dirs)
      const other = yield* buildOn(Blobchain.layerShared({ root: path.join(work.fresh("b"), "s") }).pipe(Layer.provide(db)), checkout(dirs))
      expect(other.layers).toEqual(first.layers)
      expect(other.events.filter((e) => e === "LayerDone")).toHaveLength(2)
      // and the index still names the first machine's blobs, one entry per layer
      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ blobsum: string }>`SELECT blobsum FROM layer_index`).pipe(
        Effect.provide(db)
      )
      expect(rows.map((r) => r.blobsum).sort()).toEqual([...first.layers].sort())
    }))

  it.live("a layer index that cannot answer costs the reuse, never the build", () =>
    Effect.gen(function*() {
      const file = path.join(work.fresh("db"), "shared.db")
      const dirs = trees()
      yield* buildOn(Blobchain.layerShared({ root: path.join(work.fresh("s"), "s") }).pipe(Layer.provide(sharedDb(file))), dirs)
      // the shared table goes away under the build (an operator's mistake, a broken migration)
      const dropTable = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE layer_index`).pipe(
        Effect.provide(sharedDb(file)),
        Effect.orDie
      )
      const stackWithoutTable = Blobchain.layerShared({ root: path.join(work.fresh("t"), "s") }).pipe(
        Layer.provide(sharedDb(file)),
        Layer.tap(() => dropTable)
      )
      const built = yield* buildOn(stackWithoutTable, checkout(dirs))
      expect(built.layers).toHaveLength(2)
      expect(built.events.filter((e) => e === "LayerDone")).toHaveLength(2)
    }))
})

describe("blobchain build --cache-db", () => {
  const freePort = () =>
    new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => resolve(port))
      })
    })

  it.scopedLive("keeps the mappings and the layer index in PostgreSQL, and a fresh checkout reuses the layers", () =>
    Effect.gen(function*() {
      const { name, port } = yield* freshDatabase
      const url = `postgres://postgres:secret@127.0.0.1:${port}/${name}`
      const state = path.join(work.fresh("state"), "s")
      const dirs = trees()
      const args = (from: ReadonlyArray<string>, out: string) =>
        ["build", ...from, "--state", state, "--out", out, "--source-date-epoch", String(epoch), "--cache-db", url, "--json"]
      const first = yield* Effect.promise(() => blobchain(args(dirs, work.fresh("out"))))
      expect(first.stderr).toBe("")
      expect(first.code).toBe(0)
      const again = yield* Effect.promise(() => blobchain(args(checkout(dirs), work.fresh("out")), { env: {} }))
      expect(again.code).toBe(0)
      expect(JSON.parse(first.stdout).layers).toHaveLength(2)
      expect(JSON.parse(again.stdout).layers).toEqual(JSON.parse(first.stdout).layers)
      const counts = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.all([
          sql<{ n: string }>`SELECT COUNT(*) AS n FROM layer_index`,
          sql<{ n: string }>`SELECT COUNT(*) AS n FROM blob_mappings`
        ])).pipe(Effect.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name })))
      // one entry per layer; a mapping per layer of each checkout
      expect(counts.map(([row]) => Number(row!.n))).toEqual([2, 4])
    }))

  it.scopedLive("with --cache, a second machine with an empty state uploads nothing and writes an image that verifies", () =>
    Effect.gen(function*() {
      const { proxy, env } = yield* sharedCacheForCli
      const dirs = trees()
      const machine = (from: ReadonlyArray<string>, more: ReadonlyArray<string> = []) => {
        const out = work.fresh("out")
        const args = machineBuild(from, out, more)
        const state = args[args.indexOf("--state") + 1]!
        return Effect.map(Effect.promise(() => blobchain(args, { env })), (result) => ({ ...result, out, state }))
      }
      const posts = () => proxy.seen.filter((r) => r.method === "POST" && r.url.includes("/blobs/uploads/"))
      const uploads = () => posts().filter((r) => !r.url.includes("mount=")).length
      const mounts = () => posts().filter((r) => r.url.includes("mount=") && r.status === 201).length
      const first = yield* machine(dirs)
      expect(first.code).toBe(0)
      expect(uploads()).toBe(2)
      // the second machine pushes its image to another repository of the registry: the layers
      // it took from the cache are mounted from there, only its config goes up
      const second = yield* machine(checkout(dirs), ["--push", `docker://${proxy.host}/team/app:1`])
      expect(second.stderr).toBe("")
      expect(second.code).toBe(0)
      expect(JSON.parse(first.stdout)).toMatchObject({ diffed: 2, reused: 0 })
      expect(JSON.parse(second.stdout)).toMatchObject({ diffed: 0, reused: 2 })
      expect(uploads()).toBe(3)
      expect(mounts()).toBe(2)
      expect(JSON.parse(second.stdout).layers).toEqual(JSON.parse(first.stdout).layers)
      const inspected = yield* Effect.promise(() => blobchain(["inspect", second.out]))
      expect(inspected.code).toBe(0)
      // du with the shared database says which of a machine's layers the index names: all of them
      // here; without it, it cannot tell
      type DuRecord = { kind: string; id: string; shared?: boolean; held: Array<string> }
      const layersOf = (result: { stdout: string }) =>
        (JSON.parse(result.stdout) as { records: Array<DuRecord> }).records.filter((r) => r.kind === "layer")
      const withIndex = layersOf(yield* Effect.promise(() => blobchain(["du", "--state", second.state, "--verbose", "--json"], { env })))
      expect(withIndex.map((r) => r.id).sort()).toEqual(JSON.parse(first.stdout).layers.map((l: { blob: string }) => l.blob).sort())
      expect(withIndex.map((r) => [r.shared, r.held])).toEqual([[true, ["named by the shared layer index"]], [true, ["named by the shared layer index"]]])
      const localOnly = layersOf(yield* Effect.promise(() => blobchain(["du", "--state", first.state, "--verbose", "--json"], { env: {} })))
      expect(localOnly.map((r) => r.shared)).toEqual([undefined, undefined])
      const alone = yield* Effect.promise(() => blobchain(["build", ...dirs, "--cache", `docker://${proxy.host}/team/cache`]))
      expect(alone.code).toBe(2)
      expect(alone.stderr).toContain("--cache needs --cache-db")
    }))

  it.scopedLive("three machines building the same new chain at once diff and upload each layer once, and their images agree", () =>
    Effect.gen(function*() {
      const { proxy, env } = yield* sharedCacheForCli
      const dirs = trees()
      const runs = yield* Effect.promise(() =>
        Promise.all([0, 1, 2].map(() => {
          const args = machineBuild(checkout(dirs), work.fresh("out"))
          return blobchain(args, { env })
        }))
      )
      for (const run of runs) {
        expect(run.stderr).toBe("")
        expect(run.code).toBe(0)
      }
      const layers = runs.map((run) => JSON.parse(run.stdout).layers)
      expect(layers[1]).toEqual(layers[0])
      expect(layers[2]).toEqual(layers[0])
      const uploads = proxy.seen.filter((r) => r.method === "POST" && r.url.includes("/blobs/uploads/"))
      expect(uploads).toHaveLength(2)
      // each distinct layer diffed by one of them; the others waited on its lock and found it
      const counts = runs.map((run) => JSON.parse(run.stdout) as { diffed: number; reused: number })
      expect(counts.reduce((n, c) => n + c.diffed, 0)).toBe(2)
      expect(counts.reduce((n, c) => n + c.reused, 0)).toBe(4)
    }))

  it.live("builds alone, saying so in one line, when the database cannot be reached; a bad URL is a usage error", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const dirs = trees()
      const url = `postgres://postgres:secret@127.0.0.1:${port}/nowhere`
      const result = yield* Effect.promise(() =>
        blobchain(["build", ...dirs, "--state", path.join(work.fresh("state"), "s"), "--out", work.fresh("out")], {
          env: { BLOBCHAIN_CACHE_DB: url }
        }))
      expect(result.code).toBe(0)
      const lines = result.stderr.trim().split("\n")
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^blobchain: the shared cache postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/nowhere cannot be reached \(.+\): building alone$/)
      const bad = yield* Effect.promise(() => blobchain(["build", ...dirs, "--cache-db", "mysql://x/y"]))
      expect(bad.code).toBe(2)
      expect(bad.stderr).toContain("--cache-db wants postgres://")
    }))
})

describe("Blobchain.layerShared with a blob cache in a registry", () => {
  const uploads = (proxy: Proxy) => proxy.seen.filter((r) => r.method === "POST" && r.url.includes("/blobs/uploads/")).length

  it.scopedLive("a second machine with an empty state fetches the first one's layers: nothing diffed, compressed or uploaded", () =>
    Effect.gen(function*() {
      const { proxy } = yield* proxiedRegistry
      const reference = yield* Registry.parseReference(`docker://${proxy.host}/team/cache`)
      const db = sharedDb(path.join(work.fresh("db"), "shared.db"))
      const machine = (name: string) =>
        Blobchain.layerShared({ root: path.join(work.fresh(name), "s"), cache: { reference } }).pipe(Layer.provide(db))
      const dirs = trees()
      const first = yield* buildOn(machine("a"), dirs)
      expect(first.events.filter((e) => e === "LayerDone")).toHaveLength(2)
      expect(uploads(proxy)).toBe(2)
      const before = proxy.seen.length
      const second = yield* buildOn(machine("b"), checkout(dirs))
      expect(second.layers).toEqual(first.layers)
      expect(second.events.filter((e) => e === "LayerDone")).toHaveLength(0)
      expect(second.events.filter((e) => e === "LayerReused")).toHaveLength(2)
      expect(uploads(proxy)).toBe(2)
      expect(proxy.seen.slice(before).filter((r) => r.method === "GET" && /\/blobs\/sha256:/.test(r.url))).toHaveLength(2)
    }))

  it.scopedLive("an index entry naming a blob of another layer is not trusted: the layer is made here, right", () =>
    Effect.gen(function*() {
      const registry = yield* scopedRegistry
      const reference = yield* Registry.parseReference(`docker://${registry.host}/team/cache`)
      const file = path.join(work.fresh("db"), "shared.db")
      const machine = (name: string) =>
        Blobchain.layerShared({ root: path.join(work.fresh(name), "s"), cache: { reference } }).pipe(Layer.provide(sharedDb(file)))
      const dirs = trees()
      const first = yield* buildOn(machine("a"), dirs)
      // a wrong database: each layer's entry names the other layer's blob
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`UPDATE layer_index SET blobsum = CASE blobsum WHEN ${first.layers[0]!} THEN ${first.layers[1]!} ELSE ${first.layers[0]!} END`
      ).pipe(Effect.provide(sharedDb(file)))
      const second = yield* buildOn(machine("b"), checkout(dirs))
      expect(second.layers).toEqual(first.layers)
      expect(second.events.filter((e) => e === "LayerDone")).toHaveLength(2)
      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ blobsum: string }>`SELECT blobsum FROM layer_index`).pipe(
        Effect.provide(sharedDb(file))
      )
      // the wrong entries are gone; the layers made again are recorded rightly
      expect(rows.map((r) => r.blobsum).sort()).toEqual([...first.layers].sort())
    }))

  it.scopedLive("a registry that fails costs the sharing, never the build, and no entry names a blob it lacks", () =>
    Effect.gen(function*() {
      const { proxy } = yield* proxiedRegistry
      const reference = yield* Registry.parseReference(`docker://${proxy.host}/team/cache`)
      const file = path.join(work.fresh("db"), "shared.db")
      proxy.faults.push({ path: /\/blobs\//, kind: 503, times: 1_000 })
      const built = yield* buildOn(
        Blobchain.layerShared({ root: path.join(work.fresh("a"), "s"), cache: { reference, options: { retries: 1, retryDelay: 1 } } }).pipe(
          Layer.provide(sharedDb(file))
        ),
        trees()
      )
      expect(built.layers).toHaveLength(2)
      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT diff_id FROM layer_index`).pipe(Effect.provide(sharedDb(file)))
      expect(rows).toEqual([])
    }))

  it.scopedLive("a fetched blob that does not hold the layer the entry names is not stored, nor is its ingest kept", () =>
    Effect.gen(function*() {
      const registry = yield* scopedRegistry
      const reference = yield* Registry.parseReference(`docker://${registry.host}/team/cache`)
      const layer = Buffer.from("a layer's tar, standing in\n".repeat(1000))
      const blob = zlib.gzipSync(layer)
      const descriptor = new Oci.Descriptor({ mediaType: Oci.layerMediaType("gzip"), digest: Digest.ofBytes(blob), size: blob.length })
      const diffId = Digest.ofBytes(layer)
      const other = Digest.ofBytes("another layer")
      // a machine's store and its cache, open for the test's scope
      const cacheOn = (name: string) =>
        Effect.gen(function*() {
          const context = yield* Layer.build(Layer.merge(Blobchain.layerLocal({ root: path.join(work.fresh(name), "s") }), Registry.layerHttp))
          const cache = yield* Effect.provide(RegistryBlobCache.make(reference, { retries: 0 }), context)
          return { cache, store: Context.get(context, ContentStore.ContentStore) }
        })
      const a = yield* cacheOn("a")
      yield* ContentStore.writeBlob("layer", blob, { expected: descriptor.digest }).pipe(Effect.provideService(ContentStore.ContentStore, a.store))
      expect(yield* a.cache.put(descriptor)).toBe("uploaded")
      const b = yield* cacheOn("b")
      const gone = { walk: [] as Array<unknown>, statuses: [] as Array<unknown> }
      // arriving: checked in the same pass, and dropped
      const wrong = yield* Effect.flip(b.cache.fetch(descriptor, {}, { compression: "gzip", diffId: other }))
      expect(wrong).toBeInstanceOf(BlobCache.NotTheLayer)
      expect(wrong).toMatchObject({ digest: descriptor.digest, expected: other, actual: diffId })
      expect({ walk: yield* b.store.walk(), statuses: yield* b.store.statuses }).toEqual(gone)
      // a blob that is not zstd at all is not the layer either
      expect(yield* Effect.flip(b.cache.fetch(descriptor, {}, { compression: "zstd", diffId }))).toBeInstanceOf(BlobCache.NotTheLayer)
      expect({ walk: yield* b.store.walk(), statuses: yield* b.store.statuses }).toEqual(gone)
      // nor one that is not gzip (checked on a hash thread, as gzip is)
      const raw = new Oci.Descriptor({ mediaType: Oci.layerMediaType("gzip"), digest: Digest.ofBytes(layer), size: layer.length })
      yield* ContentStore.writeBlob("raw", layer, { expected: raw.digest }).pipe(Effect.provideService(ContentStore.ContentStore, a.store))
      expect(yield* a.cache.put(raw)).toBe("uploaded")
      const notGzip = yield* Effect.flip(b.cache.fetch(raw, {}, { compression: "gzip", diffId }))
      expect(notGzip).toBeInstanceOf(BlobCache.NotTheLayer)
      expect(notGzip).toMatchObject({ actual: expect.stringMatching(/^not gzip: /) })
      expect({ walk: yield* b.store.walk(), statuses: yield* b.store.statuses }).toEqual(gone)
      // the right layer is stored, with the labels asked for
      expect(yield* b.cache.fetch(descriptor, { mine: "yes" }, { compression: "gzip", diffId })).toBe(true)
      expect((yield* b.store.info(descriptor.digest)).labels).toMatchObject({ mine: "yes" })
      // already here: read to check, and kept whatever the answer
      expect(yield* Effect.flip(b.cache.fetch(descriptor, {}, { compression: "gzip", diffId: other }))).toBeInstanceOf(BlobCache.NotTheLayer)
      expect(yield* b.cache.fetch(descriptor, {}, { compression: "gzip", diffId })).toBe(true)
      expect((yield* b.store.walk()).map((info) => info.digest)).toEqual([descriptor.digest])
    }))
})
