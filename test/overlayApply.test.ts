/**
 * The applier onto overlay snapshots: layers applied one per snapshot of the overlay snapshotter
 * give the same tree as applied onto one directory, read merged in user space and by the kernel
 * (deletions, opaque directories, a directory deleted and made again, a file swapped for a
 * directory and back, hard links to a lower layer's file); and the hostile layers of
 * hostile.test.ts, plus ones that use what the lower layers hold, are refused onto a snapshot of
 * three layers while nothing outside its upper directory changes.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { afterAll, describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Differ from "../src/Differ.js"
import * as Digest from "../src/Digest.js"
import * as Metadata from "../src/Metadata.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { removeTree } from "../src/fs/remove.js"
import { hostileLayers } from "./support/hostileLayers.js"
import { dir, file, hardlink, type RawEntry, symlink, tarOf } from "./support/rawTar.js"
import { layers } from "./support/overlayLayers.js"
import { scratch } from "./support/scratch.js"
import { manifest } from "./support/trees.js"
import * as TarApplier from "../src/TarApplier.js"
import * as WalkingDiffer from "../src/WalkingDiffer.js"
import * as WorkerThreads from "../src/WorkerThreads.js"
import * as OverlaySnapshotter from "../src/OverlaySnapshotter.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const isRoot = process.getuid?.() === 0
const work = scratch("overlay-apply")
afterAll(() => removeTree(work.dir))

const services = Layer.mergeAll(TarApplier.layer, WalkingDiffer.layer.pipe(Layer.provide(WorkerThreads.layer))).pipe(Layer.provideMerge(MemoryContentStore.layer))
const overlaySnapshotter = (root: string) => OverlaySnapshotter.layer({ root }).pipe(Layer.provide(Metadata.layer({ root })))

let blobs = 0
const applyEntries = (entries: ReadonlyArray<RawEntry>, mounts: ReadonlyArray<Mount.Mount>) =>
  Effect.gen(function*() {
    const tar = tarOf(entries)
    const info = yield* ContentStore.writeBlob(`layer-${blobs++}`, tar)
    const applier = yield* Applier.Applier
    const descriptor = new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size })
    return { diffId: yield* applier.apply(descriptor, mounts), expected: Digest.ofBytes(tar) }
  })

/** Commit one snapshot per layer on the overlay snapshotter in context: `layer-1`, `layer-2`, …. */
const overlayChain = (layers: ReadonlyArray<ReadonlyArray<RawEntry>>) =>
  Effect.gen(function*() {
    const snapshotter = yield* Snapshotter.Snapshotter
    let parent: string | undefined
    for (const [i, entries] of layers.entries()) {
      const key = `active-${i + 1}`
      const mounts = yield* snapshotter.prepare(key, parent)
      const { diffId, expected } = yield* applyEntries(entries, mounts)
      expect(diffId).toBe(expected)
      parent = `layer-${i + 1}`
      yield* snapshotter.commit(parent, key)
    }
  })

/** Mount `mounts` (one overlay or bind) read-only with the kernel at a fresh directory, for `f`. */
const withKernelView = <A>(mounts: ReadonlyArray<Mount.Mount>, f: (dir: string) => A): A => {
  const target = work.fresh("view")
  fs.mkdirSync(target)
  const [mount] = mounts
  if (mount === undefined) throw new Error("no mount")
  const options = mount.options.filter((o) => o !== "ro" && o !== "rw")
  execFileSync("mount", mount.type === "overlay"
    ? ["-t", "overlay", "overlay", "-o", ["ro", ...options].join(","), target]
    : ["--bind", "-o", "ro", mount.source, target])
  try {
    return f(target)
  } finally {
    execFileSync("umount", [target])
  }
}


describe("applying onto an overlay snapshot", () => {
  it.scopedLive("three layers, one snapshot each, give the tree they give applied onto one directory", () =>
    Effect.gen(function*() {
      const plain = work.fresh("plain")
      fs.mkdirSync(plain)
      for (const entries of layers) yield* applyEntries(entries, [Mount.bind(plain, false)])
      expect(fs.readdirSync(NodePath.join(plain, "opt")).sort()).toEqual(["new", "shared2"])
      expect(fs.readdirSync(NodePath.join(plain, "d"))).toEqual(["3"])

      const root = work.fresh("state")
      fs.mkdirSync(root)
      yield* Effect.gen(function*() {
        yield* overlayChain(layers)
        const snapshotter = yield* Snapshotter.Snapshotter
        const mounts = yield* snapshotter.mounts("layer-3")
        expect(mounts[0]?.type).toBe("overlay")
        // the root's times are whoever owns the mount's (the applier leaves them): the same for both
        const top = mounts[0]!.options.find((o) => o.startsWith("lowerdir="))!.slice("lowerdir=".length).split(":")[0]!
        for (const rootDir of [plain, top]) fs.utimesSync(rootDir, 1_000, 1_000)
        // read merged in user space: the walking differ sees the same tree
        const differ = yield* Differ.Differ
        const merged = yield* differ.diffMounts([], mounts)
        const single = yield* differ.diffMounts([], [Mount.bind(plain, true)])
        expect(merged.digest).toBe(single.digest)
        // and by the kernel
        if (isRoot) expect(withKernelView(mounts, manifest)).toEqual(manifest(plain))
      }).pipe(Effect.provide(overlaySnapshotter(root)))
    }).pipe(Effect.provide(services)))
})

// the sentinel beside the snapshots, and lower layers that hold a symlink to it, a relative one
// leading up and out, a directory, a whiteout and an opaque directory
const out = NodePath.join(work.dir, "outside")
fs.mkdirSync(NodePath.join(out, "sub"), { recursive: true })
fs.writeFileSync(NodePath.join(out, "secret"), "secret")
const lowerLayers: ReadonlyArray<ReadonlyArray<RawEntry>> = [
  [symlink("up", out), symlink("rel", "../../../../../../.."), dir("d/"), file("d/x", "x"), dir("o/"), file("o/old", "old"), file("gone", "gone")],
  [file(".wh.gone"), dir("o/"), file("o/.wh..wh..opq"), file("o/new", "new")],
  [dir("d/"), file("d/y", "y")]
]
// what only lower layers make possible: a way out that is already there, a lower name swapped
const throughLowers: ReadonlyArray<readonly [string, ReadonlyArray<RawEntry>]> = [
  ["write through a lower layer's symlink", [file("up/secret", "evil")]],
  ["a directory through a lower layer's symlink", [dir("up/newdir/")]],
  ["hard link out through a lower layer's symlink", [hardlink("h", "up/secret")]],
  ["whiteout through a lower layer's symlink", [file("up/.wh.secret")]],
  ["opaque marker through a lower layer's symlink", [file("up/.wh..wh..opq")]],
  ["write through a lower layer's relative symlink", [dir("rel/tmp/"), file("rel/tmp/blobchain-hostile-evil", "evil")]],
  ["a lower directory whited out, then a symlink in its place", [file(".wh.d"), symlink("d", out), file("d/secret", "evil")]],
  ["a lower directory replaced by a symlink", [symlink("d", out), file("d/x", "evil")]]
]

const stateRoot = work.fresh("hostile-state")
fs.mkdirSync(stateRoot)
const threeLayers = Layer.effectDiscard(overlayChain(lowerLayers)).pipe(
  Layer.provideMerge(Layer.merge(overlaySnapshotter(stateRoot), services))
)

layer(threeLayers)("hostile layers onto an overlay snapshot of three layers", (it) => {
  const cases = [...hostileLayers(out), ...throughLowers]
  it("has all of hostile.test.ts's and more", () => {
    expect(cases.length).toBeGreaterThanOrEqual(45)
  })
  for (const [index, [title, entries]] of cases.entries()) {
    it.effect(`refuses: ${title}`, () =>
      Effect.gen(function*() {
        const snapshotter = yield* Snapshotter.Snapshotter
        const key = `hostile-${index}`
        const mounts = yield* snapshotter.prepare(key, "layer-3")
        const lowers = mounts[0]!.options.find((o) => o.startsWith("lowerdir="))!.slice("lowerdir=".length).split(":")
        expect(lowers).toHaveLength(3)
        const before = { outside: manifest(out), lowers: lowers.map(manifest), siblings: fs.readdirSync(work.dir).sort() }
        const error = yield* Effect.flip(applyEntries(entries, mounts))
        expect(error._tag).toBe("UnsafePath")
        expect(manifest(out)).toEqual(before.outside)
        expect(fs.readFileSync(NodePath.join(out, "secret"), "utf8")).toBe("secret")
        expect(lowers.map(manifest)).toEqual(before.lowers)
        expect(fs.readdirSync(work.dir).sort()).toEqual(before.siblings)
        expect(fs.existsSync("/tmp/blobchain-hostile-evil")).toBe(false)
        yield* snapshotter.remove(key)
      }))
  }
})
