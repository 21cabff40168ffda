import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as ContentStore from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as Metadata from "../src/Metadata.js"
import { contentStoreSuite } from "./conformance/contentStore.js"
import { type Launcher, prepare, start } from "./fixtures/child.js"
import { noise } from "./fixtures/noise.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"
import * as LocalContentStore from "../src/LocalContentStore.js"

/** A fresh state directory, removed when the layer is released. */
const tempRoot = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "blobchain-content-"))),
  (root) => Effect.sync(() => NodeFs.rmSync(root, { recursive: true, force: true }))
)

/** layerLocal over a temp state directory with its metadata database. */
const localLayer = Layer.unwrapScoped(
  Effect.map(tempRoot, (root) => LocalContentStore.layer({ root }).pipe(Layer.provide(Metadata.layer({ root }))))
)

contentStoreSuite("layerMemory", () => MemoryContentStore.layer)
contentStoreSuite("layerLocal", () => localLayer)

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

/** The local store over `root` with its metadata database. */
const localAt = (root: string) => LocalContentStore.layer({ root }).pipe(Layer.provide(Metadata.layer({ root })))

const withRoot = <A, E>(body: (root: string) => Effect.Effect<A, E, ContentStore.ContentStore | Scope.Scope>) =>
  Effect.scoped(Effect.flatMap(tempRoot, (root) => body(root).pipe(Effect.provide(localAt(root)))))

const filesUnder = (dir: string): Array<string> =>
  NodeFs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => NodePath.relative(dir, NodePath.join(entry.parentPath, entry.name)))
    .sort()

describe("LocalContentStore.layer on disk", () => {
  it.live("blobs sit at blobs/<alg>/<hex>, read-only; ingests under a hash of the ref", () =>
    withRoot((root) =>
      Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const info = yield* ContentStore.writeBlob("../../outside", bytes("layout"))
        const path = NodePath.join(root, "blobs", "sha256", Digest.hex(info.digest))
        expect(NodeFs.readFileSync(path, "utf8")).toBe("layout")
        expect(NodeFs.statSync(path).mode & 0o777).toBe(0o444)
        yield* Effect.scoped(Effect.flatMap(store.writer({ ref: "../../outside" }), (w) => w.write(bytes("x"))))
        const hashed = createHash("sha256").update("../../outside").digest("hex")
        expect(NodeFs.readdirSync(NodePath.join(root, "ingest"))).toEqual([hashed])
        expect(filesUnder(NodePath.join(root, "ingest", hashed))).toEqual(["data", "ref.json"])
        expect(NodeFs.readdirSync(NodePath.dirname(root)).filter((n) => n === "outside")).toEqual([])
      })
    ))

  it.live("small writes are buffered (256 KiB) before they reach the file", () =>
    withRoot((root) =>
      Effect.scoped(Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const w = yield* store.writer({ ref: "buffered" })
        const data = noise(300_000, 9)
        const dataFile = NodePath.join(root, "ingest", createHash("sha256").update("buffered").digest("hex"), "data")
        for (let at = 0; at < 200_000; at += 1000) yield* w.write(data.subarray(at, at + 1000))
        expect(NodeFs.statSync(dataFile).size).toBe(0)
        expect((yield* store.status("buffered")).offset).toBe(200_000)
        for (let at = 200_000; at < 300_000; at += 1000) yield* w.write(data.subarray(at, at + 1000))
        expect(NodeFs.statSync(dataFile).size).toBe(256 * 1024)
        expect(yield* w.commit()).toBe(Digest.ofBytes(data))
      }))
    ))

  it.live("a blob written across several background datasyncs commits whole, and resumes whole", () =>
    withRoot(() =>
      Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const piece = noise(1 << 20, 11)
        const pieces = 40
        const expected = createHash("sha256")
        for (let i = 0; i < pieces; i++) expected.update(piece)
        const digest = Digest.fromHex("sha256", expected.digest("hex"))
        // half of it, closed without a commit: the ingest resumes from what was written
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* store.writer({ ref: "big" })
          for (let i = 0; i < pieces / 2; i++) yield* writer.write(piece)
        }))
        const committed = yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* store.writer({ ref: "big" })
          expect(yield* writer.offset).toBe((pieces / 2) * piece.length)
          for (let i = pieces / 2; i < pieces; i++) yield* writer.write(piece)
          return yield* writer.commit({ size: pieces * piece.length, expected: digest })
        }))
        expect(committed).toBe(digest)
        expect((yield* store.info(digest)).size).toBe(pieces * piece.length)
      })
    ))

  it.live("labels and times survive reopening the state directory", () =>
    Effect.scoped(Effect.gen(function*() {
      const root = yield* tempRoot
      const first = yield* ContentStore.writeBlob("r", bytes("persist"), { labels: { keep: "me" } }).pipe(
        Effect.provide(localAt(root))
      )
      const again = yield* Effect.flatMap(ContentStore.ContentStore, (s) => s.info(first.digest)).pipe(
        Effect.provide(localAt(root))
      )
      expect(again.labels).toEqual({ keep: "me" })
      expect(again.createdAt.getTime()).toBe(first.createdAt.getTime())
      // an unfinished ingest survives too
      yield* Effect.scoped(Effect.flatMap(ContentStore.ContentStore, (s) => s.writer({ ref: "later", total: 9 })).pipe(
        Effect.flatMap((w) => w.write(bytes("half"))),
        Effect.provide(localAt(root))
      ))
      const status = yield* Effect.flatMap(ContentStore.ContentStore, (s) => s.status("later")).pipe(
        Effect.provide(localAt(root))
      )
      expect(status.offset).toBe(4)
      expect(status.total).toBe(9)
    })))

  it.live("a blob file without a database row is content without labels", () =>
    withRoot((root) =>
      Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const data = bytes("placed by hand")
        const digest = Digest.ofBytes(data)
        NodeFs.writeFileSync(NodePath.join(root, "blobs", "sha256", Digest.hex(digest)), data)
        const info = yield* store.info(digest)
        expect(info.size).toBe(data.length)
        expect(info.labels).toEqual({})
        expect((yield* store.walk()).map((i) => i.digest)).toEqual([digest])
        expect((yield* store.update(digest, { a: "1" })).labels).toEqual({ a: "1" })
        const exists = yield* Effect.flip(ContentStore.writeBlob("w", data).pipe(
          Effect.zipRight(Effect.fail("second write should not create" as const))
        ))
        expect(exists).toBe("second write should not create")
        // a stray non-digest file is not content
        NodeFs.writeFileSync(NodePath.join(root, "blobs", "sha256", "junk"), "x")
        expect(yield* store.walk()).toHaveLength(1)
      })
    ))

  it.live("bad roots fail with a typed error naming the path", () =>
    Effect.scoped(Effect.gen(function*() {
      const db = yield* tempRoot
      const parent = yield* tempRoot
      const missing = NodePath.join(parent, "missing")
      const file = NodePath.join(parent, "file")
      NodeFs.writeFileSync(file, "not a directory")
      for (const [root, reason] of [[missing, "does not exist"], [file, "not a directory"]] as const) {
        const error = yield* Effect.flip(
          Layer.build(LocalContentStore.layer({ root }).pipe(Layer.provide(Metadata.layer({ root: db }))))
        )
        expect(error._tag).toBe("ContentStoreError")
        expect(error.message).toContain(root)
        expect(error.message).toContain(reason)
      }
      expect(NodeFs.existsSync(missing)).toBe(false)
    })))

  it.live.skipIf(process.getuid?.() === 0)("a read-only root fails with a typed error naming it", () =>
    Effect.scoped(Effect.gen(function*() {
      const db = yield* tempRoot
      const root = yield* tempRoot
      NodeFs.chmodSync(root, 0o555)
      const error = yield* Effect.flip(
        Layer.build(LocalContentStore.layer({ root }).pipe(Layer.provide(Metadata.layer({ root: db }))))
      )
      NodeFs.chmodSync(root, 0o755)
      expect(error.message).toContain(root)
      expect(error.message).toContain("not writable")
      expect(NodeFs.readdirSync(root)).toEqual([])
    })))

  it.live("an ingest left behind after its data was published never writes into the blob", () =>
    withRoot((root) =>
      Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const content = bytes("published content")
        const digest = Digest.ofBytes(content)
        // a writer that died between publishing its data as the blob and removing its ingest
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* store.writer({ ref: "died-after-publish" })
          yield* writer.write(content)
        }))
        const ingest = NodePath.join(root, "ingest", createHash("sha256").update("died-after-publish").digest("hex"))
        const blob = NodePath.join(root, "blobs", "sha256", Digest.hex(digest))
        NodeFs.mkdirSync(NodePath.dirname(blob), { recursive: true })
        NodeFs.linkSync(NodePath.join(ingest, "data"), blob)
        NodeFs.chmodSync(blob, 0o444)
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* store.writer({ ref: "died-after-publish" })
          expect(yield* writer.offset).toBe(0)
          yield* writer.write(bytes("something else entirely"))
          yield* writer.commit()
        }))
        expect(createHash("sha256").update(NodeFs.readFileSync(blob)).digest("hex")).toBe(Digest.hex(digest))
        expect(Buffer.from(yield* ContentStore.readAll(digest)).toString()).toBe("published content")
      })))

  it.live("an ingest directory left without its record is cleared by statuses", () =>
    withRoot((root) =>
      Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const orphan = NodePath.join(root, "ingest", "0".repeat(64))
        NodeFs.mkdirSync(orphan)
        NodeFs.writeFileSync(NodePath.join(orphan, "lock"), "999999999\n")
        expect(yield* store.statuses).toEqual([])
        expect(NodeFs.readdirSync(NodePath.join(root, "ingest"))).toEqual([])
      })
    ))

  describe("across processes", () => {
    let launcher: Launcher
    beforeAll(async () => {
      launcher = await prepare()
    })
    afterAll(() => launcher.cleanup())

    it.live("a ref held by another process is ContentLocked, and free once that process dies", () =>
      withRoot((root) =>
        Effect.gen(function*() {
          const store = yield* ContentStore.ContentStore
          const child = start(launcher, ["hold", root, "shared-ref"])
          yield* Effect.addFinalizer(() => Effect.promise(child.kill))
          expect(yield* Effect.promise(() => child.line(["locked", "busy"]))).toBe("locked")
          const locked = yield* Effect.flip(Effect.scoped(store.writer({ ref: "shared-ref" })))
          expect(locked).toMatchObject({ _tag: "ContentLocked", ref: "shared-ref" })
          expect((yield* Effect.flip(store.abort("shared-ref")))._tag).toBe("ContentLocked")
          yield* Effect.promise(child.kill)
          // the dead owner's lock is stale; its flushed bytes are resumable
          const resumed = yield* Effect.scoped(Effect.gen(function*() {
            const w = yield* store.writer({ ref: "shared-ref" })
            return { offset: yield* w.offset, digest: yield* w.digest }
          }))
          expect(resumed.offset).toBe(256 * 1024)
          expect(resumed.digest).toBe(Digest.ofBytes(noise(300_000, 5).subarray(0, 256 * 1024)))
        })
      ))

    it.live("a commit racing another process's delete of the same content publishes it or finds it", () =>
      withRoot((root) =>
        Effect.gen(function*() {
          const store = yield* ContentStore.ContentStore
          const content = bytes("raced")
          const digest = Digest.ofBytes(content)
          NodeFs.mkdirSync(NodePath.join(root, "blobs", "sha256"), { recursive: true })
          // the child makes the blob appear and disappear as fast as it can
          const child = start(launcher, ["flicker", root, "raced"])
          yield* Effect.addFinalizer(() => Effect.promise(child.kill))
          yield* Effect.promise(() => child.line(["flickering"]))
          let published = 0
          let found = 0
          const commit = (ref: string) =>
            Effect.scoped(Effect.gen(function*() {
              const writer = yield* store.writer({ ref })
              yield* writer.truncate(0)
              yield* writer.write(content)
              yield* writer.commit()
              published++
            })).pipe(Effect.catchTag("AlreadyExists", () => Effect.sync(() => found++)))
          for (let round = 0; round < 400; round++) {
            yield* Effect.all([commit("race-a"), commit("race-b")], { concurrency: "unbounded" })
          }
          yield* Effect.promise(child.kill)
          expect(published + found).toBe(800)
          expect(found).toBeGreaterThan(0)
          expect(yield* store.statuses).toEqual([])
          // whatever the child left, what is there is whole
          const left = yield* Effect.either(ContentStore.readAll(digest))
          if (left._tag === "Right") expect(Digest.ofBytes(left.right)).toBe(digest)
        })
      ))

    it.live("a ref held here is ContentLocked for another process", () =>
      withRoot((root) =>
        Effect.scoped(Effect.gen(function*() {
          const store = yield* ContentStore.ContentStore
          yield* store.writer({ ref: "mine" })
          const child = start(launcher, ["hold", root, "mine"])
          yield* Effect.addFinalizer(() => Effect.promise(child.kill))
          expect(yield* Effect.promise(() => child.line(["locked", "busy"]))).toBe("busy")
        }))
      ))
  })
})
