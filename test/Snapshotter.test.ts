/**
 * The native snapshotter on a real disk: the conformance suite with each copy engine, plus what
 * only a directory-per-snapshot layout can show (confinement, crash-safe steps, reopening).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { listing } from "./support/trees.js"
import * as os from "node:os"
import * as NodePath from "node:path"
import * as Metadata from "../src/Metadata.js"
import { hasGnuCp } from "../src/fs/copy.js"
import { removeTree } from "../src/fs/remove.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { dirOf, snapshotterSuite } from "./conformance/snapshotter.js"
import * as NativeSnapshotter from "../src/NativeSnapshotter.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-snapshots-"))),
  (dir) => Effect.sync(() => removeTree(dir))
)

const native = (root: string, copy: "auto" | "cp" | "walk" = "auto") =>
  NativeSnapshotter.layer({ root, copy }).pipe(Layer.provide(Metadata.layer({ root })))

const fresh = (copy: "auto" | "cp" | "walk") => Layer.unwrapScoped(Effect.map(tempRoot, (root) => native(root, copy)))

if (hasGnuCp()) snapshotterSuite("layerNative (GNU cp)", fresh("cp"))
// Node's utimes keeps microseconds only
snapshotterSuite("layerNative (Node walk)", fresh("walk"), { timeResolutionNs: 1000n })


describe("NativeSnapshotter.layer", () => {
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
        for (const [delayMs, replaceOnly] of [0, 2, 5, 10, 20, 40, 1500].flatMap((d) => [[d, false], [d, true]] as const)) {
          const key = `child-${delayMs}-${replaceOnly}`
          const fiber = yield* Effect.fork(s.prepare(key, "big@1", { replaceOnly }))
          yield* Effect.sleep(delayMs)
          const exit = yield* Fiber.interrupt(fiber)
          expect(fs.readdirSync(snapshots).filter((n) => n.startsWith("."))).toEqual([])
          const stat = yield* Effect.exit(s.stat(key))
          expect(Exit.isSuccess(stat)).toBe(Exit.isSuccess(exit))
          if (Exit.isSuccess(exit)) expect(fs.readdirSync(dirOf(exit.value))).toHaveLength(200)
          expect(fs.readdirSync(snapshots)).toHaveLength(Exit.isSuccess(exit) ? 2 : 1)
          if (Exit.isSuccess(exit)) yield* s.remove(key)
        }
        // nothing the copies started goes on writing once they are interrupted
        yield* Effect.sleep(100)
        expect(fs.readdirSync(snapshots)).toHaveLength(1)
      }).pipe(Effect.provide(native(root)))
    }))
})

describe("NativeSnapshotter.layer, prepared replaceOnly", () => {
  const inodes = (dir: string) =>
    new Map(listing(dir).map((p) => [p, fs.lstatSync(NodePath.join(dir, p))] as const))

  for (const copy of hasGnuCp() ? (["cp", "walk"] as const) : (["walk"] as const)) {
    it.scopedLive(`shares the parent's files but not its directories, and the parent survives replacements (${copy})`, () =>
      Effect.gen(function*() {
        const root = yield* tempRoot
        yield* Effect.gen(function*() {
          const s = yield* Snapshotter.Snapshotter
          const dir = dirOf(yield* s.prepare("p"))
          fs.mkdirSync(NodePath.join(dir, "d/e"), { recursive: true })
          fs.writeFileSync(NodePath.join(dir, "d/e/f"), "parent's f")
          fs.writeFileSync(NodePath.join(dir, "g"), "parent's g")
          fs.symlinkSync("g", NodePath.join(dir, "s"))
          fs.linkSync(NodePath.join(dir, "g"), NodePath.join(dir, "d/g2"))
          fs.chmodSync(NodePath.join(dir, "d"), 0o750)
          yield* s.commit("p@1", "p")
          const parent = dirOf(yield* s.mounts("p@1"))
          const before = inodes(parent)

          const shared = dirOf(yield* s.prepare("shared", "p@1", { replaceOnly: true }))
          const copied = dirOf(yield* s.prepare("copied", "p@1"))
          const sharedInodes = inodes(shared)
          const copiedInodes = inodes(copied)
          expect([...sharedInodes.keys()]).toEqual([...before.keys()])
          for (const [p, stat] of before) {
            const mine = sharedInodes.get(p)!
            // the same inode for every non-directory, a directory of its own with the same metadata
            expect(mine.ino === stat.ino).toBe(!stat.isDirectory())
            expect([mine.mode, mine.uid, mine.gid]).toEqual([stat.mode, stat.uid, stat.gid])
            if (stat.isDirectory()) expect(Math.floor(mine.mtimeMs)).toBe(Math.floor(stat.mtimeMs))
            expect(copiedInodes.get(p)!.ino === stat.ino).toBe(false)
          }
          // the hard-link group inside the tree is kept
          expect(sharedInodes.get("g")!.ino).toBe(sharedInodes.get("d/g2")!.ino)

          // replacing (never writing into) a shared file leaves the parent's as it was
          fs.rmSync(NodePath.join(shared, "d/e/f"))
          fs.writeFileSync(NodePath.join(shared, "d/e/f"), "child's f")
          fs.rmSync(NodePath.join(shared, "g"))
          fs.chmodSync(NodePath.join(shared, "d"), 0o700)
          expect(fs.readFileSync(NodePath.join(parent, "d/e/f"), "utf8")).toBe("parent's f")
          expect(fs.readFileSync(NodePath.join(parent, "g"), "utf8")).toBe("parent's g")
          expect(fs.statSync(NodePath.join(parent, "d")).mode & 0o777).toBe(0o750)
          expect([...inodes(parent)].map(([p, st]) => [p, st.ino, st.mode, st.size])).toEqual(
            [...before].map(([p, st]) => [p, st.ino, st.mode, st.size])
          )
          yield* s.commit("shared@1", "shared")
          yield* s.remove("shared@1")
          yield* s.remove("copied")
          expect(fs.readFileSync(NodePath.join(parent, "d/e/f"), "utf8")).toBe("parent's f")
        }).pipe(Effect.provide(native(root, copy)))
      }))
  }

  // an immutable file cannot be linked, even by root: the whole tree is copied instead
  const canChattr = process.getuid?.() === 0 && (() => {
    const probe = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-chattr-"))
    try {
      fs.writeFileSync(NodePath.join(probe, "f"), "")
      execFileSync("chattr", ["+i", NodePath.join(probe, "f")], { stdio: "ignore" })
      execFileSync("chattr", ["-i", NodePath.join(probe, "f")], { stdio: "ignore" })
      return true
    } catch {
      return false
    } finally {
      fs.rmSync(probe, { recursive: true, force: true })
    }
  })()
  it.scopedLive.runIf(canChattr)("copies the parent's tree whole when one of its files cannot be linked", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const dir = dirOf(yield* s.prepare("p"))
        for (const name of ["a", "b", "c"]) fs.writeFileSync(NodePath.join(dir, name), name)
        yield* s.commit("p@1", "p")
        const parent = dirOf(yield* s.mounts("p@1"))
        execFileSync("chattr", ["+i", NodePath.join(parent, "b")])
        try {
          for (const copy of hasGnuCp() ? ["cp", "walk"] : ["walk"]) {
            const child = dirOf(yield* s.prepare(`c-${copy}`, "p@1", { replaceOnly: true }))
            expect(listing(child)).toEqual(["a", "b", "c"])
            for (const name of ["a", "b", "c"]) {
              expect(fs.readFileSync(NodePath.join(child, name), "utf8")).toBe(name)
              expect(fs.statSync(NodePath.join(child, name)).ino).not.toBe(fs.statSync(NodePath.join(parent, name)).ino)
            }
          }
        } finally {
          execFileSync("chattr", ["-i", NodePath.join(parent, "b")])
        }
      }).pipe(Effect.provide(native(root)))
    }))
})
