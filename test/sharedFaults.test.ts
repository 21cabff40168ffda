/**
 * The shared cache under faults, as a property: two machines build the same new chain at once on
 * one PostgreSQL database and one registry, while the registry answers 503 or cuts connections
 * at random requests, serves a tampered blob, and the database's connections are killed at a
 * random moment. Whatever happens, both builds succeed with the same layers, and nothing wrong is
 * recorded: every layer index entry names a blob the registry has, with that diffID, and every
 * mapping names one of the chain's true pairs.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Either, FastCheck, Layer, Logger, LogLevel } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Blobchain, Build, Registry } from "../src/index.js"
import { freshDatabase } from "./support/postgres.js"
import { type Fault, startProxy, startRegistry } from "./support/registry.js"
import { scratch, write } from "./support/scratch.js"

const work = scratch("shared-faults")
afterAll(() => work.remove())

const epoch = 1_000_000

// a new chain for each run (the run's number is in both trees), as each machine's checkout has it
const trees = (run: number, change: number) => {
  const one = work.fresh("v1")
  write(one, "etc/run", `run ${run}\n`)
  write(one, "usr/share/doc/readme", `readme ${run} `.repeat(20_000))
  const two = work.fresh("v2")
  execFileSync("cp", ["-a", "--", one, two])
  write(two, "etc/app.conf", `version=${change}\n`)
  write(two, "usr/lib/new.so", "y".repeat(1_000 + change))
  return [one, two]
}

const checkout = (dirs: ReadonlyArray<string>, mtime: number) =>
  dirs.map((dir) => {
    const copy = work.fresh("checkout")
    execFileSync("cp", ["-r", "--preserve=mode", "--", dir, copy])
    execFileSync("sh", ["-c", `find "$1" -exec touch -h -d @${mtime} {} +`, "sh", copy])
    return copy
  })

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

const faultArb: FastCheck.Arbitrary<Fault> = FastCheck.record({
  method: FastCheck.constantFrom("HEAD", "GET", "POST", "PATCH", "PUT"),
  path: FastCheck.constant(/\/blobs\//),
  kind: FastCheck.constantFrom<Fault["kind"]>(503, 500, "reset"),
  skip: FastCheck.nat({ max: 4 }),
  // a few failures, which a retry may get past, or the registry failing that request for good
  times: FastCheck.oneof(FastCheck.integer({ min: 1, max: 3 }), FastCheck.constant(1_000))
})

const planArb = FastCheck.record({
  faults: FastCheck.array(faultArb, { maxLength: 3 }),
  // the registry request at which every connection to the database is killed
  killAt: FastCheck.option(FastCheck.integer({ min: 1, max: 20 }), { nil: undefined }),
  tamper: FastCheck.boolean(),
  change: FastCheck.nat({ max: 1_000 })
})

describe("the shared cache under faults", () => {
  it.live("two machines at once, any faults: both build the chain, and every entry is right", () =>
    Effect.gen(function*() {
      const registry = yield* Effect.promise(() => startRegistry())
      const proxy = yield* Effect.promise(() => startProxy(registry.port))
      let run = 0
      const property = FastCheck.asyncProperty(planArb, (plan) =>
        Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          run++
          const { name, port } = yield* freshDatabase
          const reference = yield* Registry.parseReference(`docker://${proxy.host}/faults/run${run}`)
          proxy.faults.splice(0, proxy.faults.length, ...plan.faults.map((f) => ({ ...f })))
          const first = proxy.seen.length
          const kill = () =>
            execFile("psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-c",
              `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`], () => {})
          proxy.onRequest = (count) => {
            if (plan.killAt !== undefined && count - first === plan.killAt) kill()
          }
          const dirs = trees(run, plan.change)
          const machine = (index: number) => {
            const db = PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name })
            const stack = Blobchain.layerShared({
              root: path.join(work.fresh(`m${index}`), "s"),
              cache: { reference, options: { retries: 1, retryDelay: 1 } }
            }).pipe(Layer.provide(db))
            return Build.build(checkout(dirs, epoch + 100 * index), { sourceDateEpoch: epoch }).pipe(
              Effect.map((built) => built.image.layers.map((layer, i) => ({ blob: layer.digest, diffId: built.image.imageConfig.rootfs.diff_ids[i]! }))),
              Effect.provide(stack),
              Effect.either
            )
          }
          if (plan.tamper) {
            // the first blob anyone GETs arrives with a byte flipped
            proxy.tamper = undefined
            const before = proxy.onRequest
            proxy.onRequest = (count) => {
              before?.(count)
              const last = proxy.seen[proxy.seen.length - 1]
              const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(last?.url ?? "")?.[1]
              if (last?.method === "GET" && blob !== undefined && proxy.tamper === undefined) proxy.tamper = blob
            }
          }
          const [a, b] = yield* Effect.all([machine(1), machine(2)], { concurrency: 2 }).pipe(
            Effect.provide(Logger.minimumLogLevel(LogLevel.Error))
          )
          proxy.onRequest = undefined
          proxy.tamper = undefined
          proxy.faults.splice(0, proxy.faults.length)
          if (Either.isLeft(a) || Either.isLeft(b)) throw new Error(`a build failed: ${Either.isLeft(a) ? a.left.message : ""} ${Either.isLeft(b) ? b.left.message : ""}`)
          expect(b.right).toEqual(a.right)
          const pairs = new Set(a.right.map((l) => `${l.diffId} ${l.blob}`))
          // what the database says, read afresh (its connections may have been killed)
          const rows = yield* Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const index = yield* sql<{ diff_id: string; blobsum: string; media_type: string }>`SELECT diff_id, blobsum, media_type FROM layer_index`
            const mapped = yield* sql<{ diff_id: string; blobsum: string }>`SELECT diff_id, blobsum FROM blob_mappings`
            return { index, mapped }
          }).pipe(
            Effect.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name })),
            Effect.catchAll(() => Effect.succeed({ index: [], mapped: [] }))
          )
          for (const row of rows.mapped) expect(pairs).toContain(`${row.diff_id} ${row.blobsum}`)
          for (const row of rows.index) {
            // straight from the registry, past the proxy and its faults
            const response = yield* Effect.promise(() => fetch(`http://${registry.host}/v2/faults/run${run}/blobs/${row.blobsum}`))
            expect(response.status).toBe(200)
            const blob = new Uint8Array(yield* Effect.promise(() => response.arrayBuffer()))
            expect(sha256(blob)).toBe(row.blobsum)
            expect(sha256(zlib.gunzipSync(blob))).toBe(row.diff_id)
          }
        }))))
      yield* Effect.promise(() => FastCheck.assert(property, { numRuns: 10, endOnFailure: true }))
      yield* Effect.promise(() => proxy.stop())
      yield* Effect.promise(() => registry.stop())
    }), { timeout: 240_000 })
})
