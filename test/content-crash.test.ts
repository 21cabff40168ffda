/**
 * Crash safety of the local content store: children writing blobs are killed with SIGKILL at
 * random moments; the state directory must stay consistent and every ingest recoverable.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as ContentStore from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as Metadata from "../src/Metadata.js"
import { type Launcher, prepare, start } from "./fixtures/child.js"
import { crashContent, crashContents } from "./fixtures/content-writer.js"
import * as LocalContentStore from "../src/LocalContentStore.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "blobchain-crash-"))),
  (root) => Effect.sync(() => NodeFs.rmSync(root, { recursive: true, force: true }))
)

const localAt = (root: string) => LocalContentStore.layer({ root }).pipe(Layer.provideMerge(Metadata.layer({ root })))

/** A small seeded generator, so a failing run can be replayed from the seed it prints. */
const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const sha = (algorithm: string, path: string) =>
  createHash(algorithm).update(NodeFs.readFileSync(path)).digest("hex")

describe("local content store under SIGKILL", () => {
  let launcher: Launcher
  beforeAll(async () => {
    launcher = await prepare()
  })
  afterAll(() => launcher.cleanup())

  it.live("children killed at random moments leave a consistent, recoverable state directory", () =>
    Effect.scoped(Effect.gen(function*() {
      const seed = Date.now() % 1_000_000
      const next = random(seed)
      yield* Effect.annotateCurrentSpan("seed", seed)
      const root = yield* tempRoot
      // make the database and directories once, so children never race the migrations
      yield* Effect.scoped(Layer.build(localAt(root)))

      const rounds = 12
      const perRound = 2
      let kills = 0
      let blobsSeen = 0
      for (let round = 0; round < rounds; round++) {
        yield* Effect.forEach(
          Array.from({ length: perRound }, (_, k) => k),
          (k) =>
            Effect.gen(function*() {
              const child = start(launcher, ["write", root, String(round * perRound + k)])
              yield* Effect.promise(() => child.line(["ready"]))
              yield* Effect.sleep(Math.floor(next() * 500))
              yield* Effect.promise(child.kill)
              expect(child.child.signalCode, `seed ${seed}: ${child.stderr()}`).toBe("SIGKILL")
              kills++
            }),
          { concurrency: perRound }
        )
        blobsSeen = Math.max(blobsSeen, NodeFs.readdirSync(NodePath.join(root, "blobs", "sha256")).length)
      }
      expect(kills).toBeGreaterThanOrEqual(20)
      expect(blobsSeen, `seed ${seed}: the children committed nothing`).toBeGreaterThan(0)

      // every published blob is whole: its bytes hash to its name, and it is read-only
      for (const algorithm of NodeFs.readdirSync(NodePath.join(root, "blobs"))) {
        for (const name of NodeFs.readdirSync(NodePath.join(root, "blobs", algorithm))) {
          const path = NodePath.join(root, "blobs", algorithm, name)
          expect(sha(algorithm, path), `seed ${seed}: ${path}`).toBe(name)
          expect(NodeFs.statSync(path).mode & 0o777).toBe(0o444)
        }
      }

      yield* Effect.gen(function*() {
        // the database opens and is intact
        const sql = yield* SqlClient.SqlClient
        const check = yield* sql`PRAGMA integrity_check`.pipe(
          Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ integrity_check: Schema.String }))))
        )
        expect(check[0].integrity_check).toBe("ok")

        // every ingest can be resumed (its bytes re-hashed) and then finished or aborted
        const store = yield* ContentStore.ContentStore
        const statuses = yield* store.statuses
        for (const [i, status] of statuses.entries()) {
          const dataFile = NodePath.join(root, "ingest", createHash("sha256").update(status.ref).digest("hex"), "data")
          yield* Effect.scoped(Effect.gen(function*() {
            const writer = yield* store.writer({ ref: status.ref })
            const onDisk = NodeFs.existsSync(dataFile) ? NodeFs.readFileSync(dataFile) : Buffer.alloc(0)
            expect(yield* writer.offset).toBe(onDisk.length)
            expect(yield* writer.digest).toBe(Digest.ofBytes(onDisk))
            if (i % 2 === 1 || status.expected === undefined) return
            const index = Array.from({ length: crashContents }, (_, j) => j)
              .find((j) => Digest.ofBytes(crashContent(j)) === status.expected)
            expect(index, `seed ${seed}: unknown expected digest`).toBeDefined()
            yield* writer.truncate(0)
            yield* writer.write(crashContent(index ?? 0))
            yield* writer.commit().pipe(Effect.catchTag("AlreadyExists", () => Effect.void))
          }))
          if (i % 2 === 1 || status.expected === undefined) yield* store.abort(status.ref)
        }
        expect(yield* store.statuses).toEqual([])
        expect(NodeFs.readdirSync(NodePath.join(root, "ingest"))).toEqual([])

        // and a later write of the same content succeeds
        for (let j = 0; j < crashContents; j++) {
          const bytes = crashContent(j)
          const info = yield* ContentStore.writeBlob(`after-${j}`, bytes, { labels: { after: "yes" } })
          expect(info.digest).toBe(Digest.ofBytes(bytes))
          expect(info.labels["after"]).toBe("yes")
          expect(Buffer.compare(yield* ContentStore.readAll(info.digest), bytes)).toBe(0)
        }
      }).pipe(Effect.provide(localAt(root)))
    })))
})
