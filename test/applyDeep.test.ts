/**
 * Trees deeper than PATH_MAX: a layer 4000 directories deep applies (each directory checked
 * once, not once per entry below it) onto a directory and onto an overlay, and such a tree is
 * deleted, also when a snapshotter finds one left in its trash.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Tar from "../src/archive/tar.js"
import { encoded as entry } from "./support/rawTar.js"
import * as Metadata from "../src/Metadata.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { removeTree, removeTreeInSteps } from "../src/fs/remove.js"
import { scratch } from "./support/scratch.js"
import * as TarApplier from "../src/TarApplier.js"
import * as NativeSnapshotter from "../src/NativeSnapshotter.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const depth = 4000
const work = scratch("deep")
// as root, on a tmpfs of its own: thousands of directories made and deleted cost far less there
const onTmpfs = process.getuid?.() === 0
if (onTmpfs) execFileSync("mount", ["-t", "tmpfs", "-o", "size=256m", "tmpfs", work.dir])
afterAll(() => {
  if (onTmpfs) execFileSync("umount", ["-l", work.dir])
  removeTree(work.dir)
})

const services = TarApplier.layer.pipe(Layer.provideMerge(MemoryContentStore.layer))

/**
 * A file at the bottom of `a/a/…/a`, `depth` directories deep; with `dirs`, every directory an
 * entry before it, as a differ writes a deep tree, else the directories left to be made.
 */
const deepLayer = (dirs: boolean): Buffer => {
  const parts: Array<Buffer> = []
  let path = ""
  for (let i = 0; i < depth; i++) {
    path += "a/"
    if (dirs) parts.push(entry(path, Tar.TypeFlag.directory))
  }
  parts.push(entry(`${path}bottom`, Tar.TypeFlag.file, "deep"), Tar.endOfArchive())
  return Buffer.concat(parts)
}

const applyTo = (mount: Mount.Mount, dirs: boolean) =>
  Effect.gen(function*() {
    const info = yield* ContentStore.writeBlob("deep", deepLayer(dirs))
    const applier = yield* Applier.Applier
    return yield* applier.apply(
      new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size }),
      [mount]
    )
  }).pipe(Effect.provide(services))

/** Make `a/a/…/a` `depth` deep under `dir` with a file at the bottom, by shell (paths stay relative). */
const makeDeep = (dir: string): void => {
  const chunk = Array.from({ length: 500 }, () => "a").join("/")
  execFileSync("sh", ["-c", `set -e; cd "$1"; i=0; while [ $i -lt ${depth} ]; do mkdir -p ${chunk}; cd -P ${chunk}; i=$((i + 500)); done; echo deep > bottom`, "sh", dir])
}

/**
 * What `find` sees below `dir`: the depth of the file at the bottom and its content (read in its
 * own directory), and the depth and mtime year of the directories at the bottom.
 */
const bottomOf = (dir: string) => {
  const file = execFileSync("find", [dir, "-name", "bottom", "-printf", "%d ", "-execdir", "cat", "{}", ";"], { encoding: "utf8" })
  const dirs = execFileSync("find", [dir, "-mindepth", String(depth), "-type", "d", "-printf", "%d %TY\n"], { encoding: "utf8" })
  return { file, dirs: dirs.trim().split("\n") }
}

describe("deep trees", () => {
  it.scopedLive("a layer 4000 directories deep applies onto a directory, times set, and is deleted", () =>
    Effect.gen(function*() {
      const root = work.fresh("native")
      fs.mkdirSync(root)
      yield* applyTo(Mount.bind(root, false), true)
      const { dirs, file } = bottomOf(root)
      expect(file).toBe(`${depth + 1} deep`)
      // the deepest directory, with the layer's mtime (1970)
      expect(dirs).toEqual([`${depth} 1970`])
      removeTree(root)
      expect(fs.existsSync(root)).toBe(false)
    }))

  it.scopedLive("a file 4000 directories deep applies onto an overlay's upper directory, its parents made", () =>
    Effect.gen(function*() {
      const base = work.fresh("overlay")
      const [lower, upper, scratchDir] = ["lower", "upper", "work"].map((d) => NodePath.join(base, d)) as [string, string, string]
      for (const dir of [lower, upper, scratchDir]) fs.mkdirSync(dir, { recursive: true })
      fs.mkdirSync(NodePath.join(lower, "a"))
      fs.writeFileSync(NodePath.join(lower, "a", "old"), "old")
      yield* applyTo(new Mount.Mount({
        type: "overlay",
        source: "overlay",
        options: [`workdir=${scratchDir}`, `upperdir=${upper}`, `lowerdir=${lower}`]
      }), false)
      expect(bottomOf(upper).file).toBe(`${depth + 1} deep`)
      // the lower layer is read, never written
      expect(fs.readdirSync(NodePath.join(lower, "a"))).toEqual(["old"])
      yield* removeTreeInSteps(base)
      expect(fs.existsSync(base)).toBe(false)
    }))

  it.scopedLive("a tree 4000 directories deep, read-only ones among them, is deleted in steps", () =>
    Effect.gen(function*() {
      const root = work.fresh("steps")
      fs.mkdirSync(root)
      makeDeep(root)
      expect(bottomOf(root).file).toBe(`${depth + 1} deep\n`)
      execFileSync("chmod", ["-R", "a-w", root])
      yield* removeTreeInSteps(root)
      expect(fs.existsSync(root)).toBe(false)
    }))
})

describe("the native snapshotter's trash", () => {
  const native = (root: string) => NativeSnapshotter.layer({ root }).pipe(Layer.provide(Metadata.layer({ root })))
  const open = (root: string) => Effect.gen(function*() {
    const s = yield* Snapshotter.Snapshotter
    return yield* s.walk
  }).pipe(Effect.provide(native(root)))

  it.scopedLive("a deep tree left in the trash is deleted when the snapshotter opens", () =>
    Effect.gen(function*() {
      const root = work.fresh("trash")
      const trash = NodePath.join(root, "snapshots", ".trash-deep")
      fs.mkdirSync(trash, { recursive: true })
      makeDeep(trash)
      expect(yield* open(root)).toEqual([])
      expect(fs.readdirSync(NodePath.join(root, "snapshots"))).toEqual([])
    }))

  it.scopedLive.skipIf(process.getuid?.() !== 0)("a tree in the trash that cannot be deleted does not stop the snapshotter opening", () =>
    Effect.gen(function*() {
      const root = work.fresh("stuck")
      const stuck = NodePath.join(root, "snapshots", ".trash-stuck")
      fs.mkdirSync(stuck, { recursive: true })
      // a mount point cannot be removed while mounted
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", stuck])
      yield* Effect.addFinalizer(() => Effect.sync(() => execFileSync("umount", [stuck])))
      fs.writeFileSync(NodePath.join(stuck, "f"), "x")
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        yield* s.prepare("works")
        expect((yield* s.walk).map((i) => i.key)).toEqual(["works"])
      }).pipe(Effect.provide(native(root)))
      expect(fs.existsSync(stuck)).toBe(true)
    }))
})
