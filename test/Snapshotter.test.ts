/**
 * The native snapshotter on a real disk: the conformance suite with each copy engine, plus what
 * only a directory-per-snapshot layout can show (confinement, crash-safe steps, reopening).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import { listing } from "./support/trees.js"
import * as os from "node:os"
import * as NodePath from "node:path"
import * as Metadata from "../src/Metadata.js"
import { hasGnuCp, removeTree } from "../src/snapshot/tree.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { dirOf, snapshotterSuite } from "./conformance/snapshotter.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-snapshots-"))),
  (dir) => Effect.sync(() => removeTree(dir))
)

const native = (root: string, copy: "auto" | "cp" | "walk" = "auto") =>
  Snapshotter.layerNative({ root, copy }).pipe(Layer.provide(Metadata.layer({ root })))

const fresh = (copy: "auto" | "cp" | "walk") => Layer.unwrapScoped(Effect.map(tempRoot, (root) => native(root, copy)))

if (hasGnuCp()) snapshotterSuite("layerNative (GNU cp)", fresh("cp"))
// Node's utimes keeps microseconds only
snapshotterSuite("layerNative (Node walk)", fresh("walk"), { timeResolutionNs: 1000n })


describe("Snapshotter.layerNative", () => {
  it.scopedLive("hostile keys write nothing outside root/snapshots", () =>
    Effect.gen(function*() {
      const outer = yield* tempRoot
      const root = NodePath.join(outer, "state", "deeper")
      fs.mkdirSync(root, { recursive: true })
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        for (const key of ["../../../x", "../escape", "/tmp/abs", "a/b"]) {
          const dir = dirOf(yield* s.prepare(key))
          expect(NodePath.relative(NodePath.join(root, "snapshots"), dir).startsWith("..")).toBe(false)
          yield* s.commit(`${key}@1`, key)
          yield* s.prepare(`${key}/child`, `${key}@1`)
        }
      }).pipe(Effect.provide(native(root)))
      expect(fs.readdirSync(outer)).toEqual(["state"])
      expect(fs.readdirSync(NodePath.join(outer, "state"))).toEqual(["deeper"])
      expect(fs.readdirSync(root).filter((n) => !n.startsWith(Metadata.filename)).sort()).toEqual(["snapshots"])
    }))

  it.scopedLive("a failed copy leaves neither a record nor a directory behind", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const dir = dirOf(yield* s.prepare("p"))
        fs.writeFileSync(NodePath.join(dir, "f"), "x")
        yield* s.commit("p@1", "p")
        const before = fs.readdirSync(NodePath.join(root, "snapshots")).sort()
        // the parent's tree vanishes behind the snapshotter's back: the copy must fail cleanly
        fs.rmSync(dirOf(yield* s.mounts("p@1")), { recursive: true })
        const error = yield* Effect.flip(s.prepare("c", "p@1"))
        expect(error._tag).toBe("SnapshotterError")
        expect(error).toMatchObject({ op: "prepare", key: "c" })
        expect((yield* Effect.flip(s.stat("c")))._tag).toBe("SnapshotNotFound")
        expect(fs.readdirSync(NodePath.join(root, "snapshots")).sort()).toEqual(before)
      }).pipe(Effect.provide(native(root)))
    }))

  it.scopedLive("records and trees survive reopening; removal leftovers are swept on open", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        fs.writeFileSync(NodePath.join(dirOf(yield* s.prepare("a", undefined, { labels: { l: "v" } })), "f"), "kept")
        yield* s.commit("a@1", "a")
        yield* s.prepare("b", "a@1")
      }).pipe(Effect.provide(native(root)))
      const snapshots = NodePath.join(root, "snapshots")
      fs.mkdirSync(NodePath.join(snapshots, ".trash-leftover", "fs", "x"), { recursive: true })
      fs.mkdirSync(NodePath.join(snapshots, ".staging-crashed", "fs"), { recursive: true })
      fs.mkdirSync(NodePath.join(snapshots, ".staging-in-progress", "fs"), { recursive: true })
      const twoDaysAgo = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000)
      fs.utimesSync(NodePath.join(snapshots, ".staging-crashed"), twoDaysAgo, twoDaysAgo)
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        expect((yield* s.walk).map((i) => [i.key, i.kind, i.labels])).toEqual([
          ["a@1", "committed", { l: "v" }],
          ["b", "active", {}]
        ])
        expect(fs.readFileSync(NodePath.join(dirOf(yield* s.mounts("b")), "f"), "utf8")).toBe("kept")
        // a young staging directory may be another process's copy in progress: left alone
        expect(fs.readdirSync(snapshots).filter((n) => n.startsWith("."))).toEqual([".staging-in-progress"])
        yield* s.remove("b")
        yield* s.remove("a@1")
      }).pipe(Effect.provide(native(root)))
      expect(listing(snapshots)).toEqual([".staging-in-progress", ".staging-in-progress/fs"])
    }))

  it.scopedLive("an interrupted prepare leaves either the whole snapshot or nothing", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const dir = dirOf(yield* s.prepare("big"))
        for (let i = 0; i < 200; i++) fs.writeFileSync(NodePath.join(dir, `f${i}`), new Uint8Array(64 * 1024).fill(i))
        yield* s.commit("big@1", "big")
        const snapshots = NodePath.join(root, "snapshots")
        for (const delayMs of [0, 2, 5, 10, 20, 40, 1500]) {
          const key = `child-${delayMs}`
          const fiber = yield* Effect.fork(s.prepare(key, "big@1"))
          yield* Effect.sleep(delayMs)
          const exit = yield* Fiber.interrupt(fiber)
          expect(fs.readdirSync(snapshots).filter((n) => n.startsWith("."))).toEqual([])
          const stat = yield* Effect.exit(s.stat(key))
          expect(Exit.isSuccess(stat)).toBe(Exit.isSuccess(exit))
          if (Exit.isSuccess(exit)) expect(fs.readdirSync(dirOf(exit.value))).toHaveLength(200)
          expect(fs.readdirSync(snapshots)).toHaveLength(Exit.isSuccess(exit) ? 2 : 1)
          if (Exit.isSuccess(exit)) yield* s.remove(key)
        }
      }).pipe(Effect.provide(native(root)))
    }))
})
