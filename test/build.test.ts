import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Blobchain, Build, Digest, Image, Oci, Snapshotter } from "../src/index.js"
import { scratch, write } from "./support/scratch.js"
import { haveTool, run } from "./support/tools.js"

const umoci = haveTool("umoci")
const work = scratch("build")
afterAll(() => work.remove())

const tree = (files: number) => {
  const dir = work.fresh("tree")
  for (let i = 0; i < files; i++) write(dir, `d${i % 10}/f${i}`, `file ${i}\n`.repeat(20))
  return dir
}

const activeSnapshots = Effect.flatMap(Snapshotter.Snapshotter, (s) => s.walk).pipe(
  Effect.map((all) => all.filter((s) => s.kind === "active").map((s) => s.key))
)

describe("Build", () => {
  it.scoped("a failed commit removes the active snapshot; the next build succeeds", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      const dir = tree(20)
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const real = Snapshotter.Snapshotter.of(yield* Effect.provide(Snapshotter.Snapshotter, context))
      const failing = Snapshotter.layer({
        ...real,
        commit: (name) => Effect.fail(new Snapshotter.SnapshotterError({ op: "commit", key: name, reason: "disk full (scripted)" }))
      })
      const error = yield* Effect.flip(Build.build([dir]).pipe(Effect.provide(failing), Effect.provide(context)))
      expect(error.message).toContain("disk full")
      expect(yield* Effect.provide(activeSnapshots, context)).toEqual([])
      const built = yield* Build.build([dir]).pipe(Effect.provide(context))
      expect(built.snapshots.map((s) => s.reused)).toEqual([false])
    }))

  it.live("an interrupted build leaves no active snapshot behind", () =>
    Effect.scoped(Effect.gen(function*() {
      const root = work.fresh("state")
      const dirs = [tree(1500), tree(1500)]
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      for (const delay of [0, 5, 30, 120]) {
        const fiber = yield* Effect.fork(Build.build(dirs).pipe(Effect.provide(context)))
        yield* Effect.sleep(delay)
        yield* Fiber.interrupt(fiber)
        expect(yield* Effect.provide(activeSnapshots, context)).toEqual([])
      }
      const built = yield* Build.build(dirs).pipe(Effect.provide(context))
      expect(built.image.layers).toHaveLength(2)
    })))

  it.scoped("an unchanged tree is decided from stats alone: its content is not read again", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      const dir = tree(5)
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const first = yield* Build.build([dir]).pipe(Effect.provide(context))
      // same size and times, other bytes: only a reader of contents could tell
      const file = path.join(dir, "d0/f0")
      const stat = fs.statSync(file, { bigint: true })
      fs.writeFileSync(file, Buffer.from(fs.readFileSync(file).toString().toUpperCase()))
      fs.utimesSync(file, new Date(Number(stat.atimeNs / 1_000_000n)), new Date(Number(stat.mtimeNs / 1_000_000n)))
      const changedNs = fs.statSync(file, { bigint: true }).mtimeNs
      if (changedNs !== stat.mtimeNs) {
        // utimes keeps microseconds at best: set the exact nanoseconds with touch
        run("touch", ["-m", "-d", `@${stat.mtimeNs / 1_000_000_000n}.${String(stat.mtimeNs % 1_000_000_000n).padStart(9, "0")}`, file])
      }
      const second = yield* Build.build([dir]).pipe(Effect.provide(context))
      expect(second.snapshots.map((s) => s.reused)).toEqual([true])
      expect(second.image.manifest.digest).toBe(first.image.manifest.digest)
    }))

  it.scoped("a multi-platform base is resolved by --platform", () =>
    Effect.gen(function*() {
      if (!umoci) return
      const layout = work.fresh("layout")
      run("umoci", ["init", "--layout", layout])
      run("umoci", ["new", "--image", `${layout}:plain`])
      const index = JSON.parse(fs.readFileSync(path.join(layout, "index.json"), "utf8"))
      const single = index.manifests[0]
      const nested = {
        schemaVersion: 2,
        mediaType: Oci.MediaType.imageIndex,
        manifests: [
          { ...single, annotations: undefined, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
          { ...single, annotations: undefined, platform: Oci.hostPlatform() }
        ]
      }
      const bytes = Buffer.from(JSON.stringify(nested))
      const digest = Digest.ofBytes(bytes)
      fs.writeFileSync(path.join(layout, "blobs", "sha256", digest.slice(7)), bytes)
      index.manifests.push({
        mediaType: Oci.MediaType.imageIndex,
        digest,
        size: bytes.length,
        annotations: { [Oci.AnnotationRefName]: "multi" }
      })
      fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify(index))
      const context = yield* Layer.build(Blobchain.layerLocal({ root: work.fresh("state") }))
      const host = yield* Image.load(layout, { tag: "multi" }).pipe(Effect.provide(context))
      expect(host.manifest.digest).toBe(single.digest)
      const arm = yield* Image.load(layout, { tag: "multi", platform: { os: "linux", architecture: "arm64" } }).pipe(
        Effect.provide(context)
      )
      expect(arm.manifest.digest).toBe(single.digest)
      const error = yield* Effect.flip(
        Image.load(layout, { tag: "multi", platform: { os: "linux", architecture: "s390x" } }).pipe(Effect.provide(context))
      )
      expect(error.message).toMatch(/no manifest for linux\/s390x \(have: linux\/arm64\/v8, linux\//)
    }))
})
