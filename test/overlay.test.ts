/**
 * The overlay snapshotter on a real disk: mounts in containerd's form, records shared with the
 * native one, and filling from directories read back merged in user space and by the kernel.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { children, fromMounts, type Tree } from "../src/fs/tree.js"
import * as Metadata from "../src/Metadata.js"
import * as Mount from "../src/Mount.js"
import type { Mount as MountData } from "../src/Mount.js"
import { fillOverlay } from "../src/snapshot/overlayFill.js"
import { removeTree } from "../src/fs/remove.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { snapshotterSuite } from "./conformance/snapshotter.js"
import { applyOps, cloneSpec, listing, manifest, materialize, opArb, type Spec } from "./support/trees.js"
import * as OverlaySnapshotter from "../src/OverlaySnapshotter.js"
import * as NativeSnapshotter from "../src/NativeSnapshotter.js"

const isRoot = process.getuid?.() === 0

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-overlay-"))),
  (dir) => Effect.sync(() => removeTree(dir))
)

const overlay = (root: string) => OverlaySnapshotter.layer({ root }).pipe(Layer.provide(Metadata.layer({ root })))

const withOverlay = <A, E>(effect: (root: string) => Effect.Effect<A, E, Snapshotter.Snapshotter>) =>
  Effect.flatMap(tempRoot, (root) => effect(root).pipe(Effect.provide(overlay(root))))

const treeOf = (mounts: ReadonlyArray<MountData>): Tree => {
  const tree = fromMounts(mounts)
  if (typeof tree === "string") throw new Error(tree)
  return tree
}

/** Every entry of a (merged) tree with all a layer looks at, nanosecond times included, in walk order. */
const mergedManifest = (tree: Tree): Array<string> => {
  const lines: Array<string> = []
  const firstOfInode = new Map<string, string>()
  const root = fs.lstatSync(tree.root[0]!, { bigint: true })
  lines.push(`. mode=${root.mode} owner=${root.uid}:${root.gid} mtime=${root.mtimeNs}`)
  const visit = (prefix: string, dirs: ReadonlyArray<string>) => {
    for (const node of children(tree, dirs)) {
      const s = node.stat
      const path = prefix + node.name
      let what = s.isDirectory() ? "dir" : s.isSymbolicLink() ? `symlink ${fs.readlinkSync(node.path)}` : `rdev=${s.rdev}`
      if (s.isFile()) {
        what = `file ${createHash("sha256").update(fs.readFileSync(node.path)).digest("hex")}`
        if (s.nlink > 1n) {
          const inode = `${s.dev}:${s.ino}`
          what += ` group=${firstOfInode.get(inode) ?? path}`
          if (!firstOfInode.has(inode)) firstOfInode.set(inode, path)
        }
      }
      lines.push(`${path} ${what} mode=${s.mode} owner=${s.uid}:${s.gid} mtime=${s.mtimeNs}`)
      if (s.isDirectory()) visit(`${path}/`, node.dirs)
    }
  }
  if (tree.root.length > 0) visit("", tree.root)
  return lines
}

const sourceManifest = (dir: string) => mergedManifest({ root: [dir], overlay: false })

/** Mount `mounts` with the kernel on `target`; the caller unmounts. */
const kernelMount = (mounts: ReadonlyArray<MountData>, target: string): void => {
  const [mount] = mounts
  if (mount === undefined) throw new Error("no mount")
  const args = mount.type === "overlay"
    ? ["-t", "overlay", "overlay", "-o", mount.options.join(","), target]
    : ["--bind", "-o", mount.options.includes("ro") ? "ro" : "rw", mount.source, target]
  execFileSync("mount", args, { stdio: "pipe" })
}

const withKernelMount = <A>(mounts: ReadonlyArray<MountData>, f: (dir: string) => A): A => {
  const target = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-mnt-"))
  try {
    kernelMount(mounts, target)
    try {
      return f(target)
    } finally {
      execFileSync("umount", [target])
    }
  } finally {
    fs.rmdirSync(target)
  }
}

const canMount = (() => {
  if (!isRoot || process.platform !== "linux") return false
  return fs.readFileSync("/proc/filesystems", "utf8").includes("\toverlay\n")
})()
if (!canMount) console.log("overlay kernel-mount checks skipped: they need root on Linux with overlayfs")

// The conformance suite reads and writes snapshots through directories: here, kernel mounts,
// one per distinct overlay (a snapshot asked for twice shows the same directory), all undone after each test.
const kernelMounts = new Map<string, string>()

const kernelDirOf = (mounts: ReadonlyArray<MountData>): string => {
  expect(mounts).toHaveLength(1)
  const mount = mounts[0]!
  if (mount.type === "bind") return mount.source
  const key = mount.options.join(",")
  const known = kernelMounts.get(key)
  if (known !== undefined) return known
  const target = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-mnt-"))
  kernelMount(mounts, target)
  kernelMounts.set(key, target)
  return target
}

afterEach(() => {
  for (const target of kernelMounts.values()) {
    execFileSync("umount", [target])
    fs.rmdirSync(target)
  }
  kernelMounts.clear()
})

if (canMount) {
  snapshotterSuite(
    "layerOverlay (kernel mounts)",
    Layer.unwrapScoped(Effect.map(tempRoot, overlay)),
    { dirOf: kernelDirOf, sharesParentFiles: true }
  )
}

const upperDirOf = (mounts: ReadonlyArray<MountData>): string => {
  const found = mounts[0]?.options.find((o) => o.startsWith("upperdir="))
  return found === undefined ? mounts[0]!.source : found.slice("upperdir=".length)
}

/** Paths under a directory, recursively, sorted. */

const nanoTouch = (path: string, ns: bigint) =>
  execFileSync("touch", ["-h", "-m", "-d", `@${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, "0")}`, path])

describe("OverlaySnapshotter.layer", () => {
  it.scopedLive("mounts in containerd's form: upper over the ancestors nearest first, views and committed read-only", () =>
    withOverlay((root) =>
      Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const fsOf = (mounts: ReadonlyArray<MountData>) => upperDirOf(mounts)
        const a = yield* s.prepare("a")
        expect(a).toHaveLength(1)
        expect(a[0]).toMatchObject({ type: "bind", options: ["rw", "rbind"] })
        const aFs = fsOf(a)
        expect(NodePath.basename(aFs)).toBe("fs")
        expect(NodePath.relative(NodePath.join(root, "snapshots"), aFs).startsWith("..")).toBe(false)
        fs.writeFileSync(NodePath.join(aFs, "f"), "a")
        yield* s.commit("a@1", "a")
        expect(yield* s.mounts("a@1")).toEqual([expect.objectContaining({ type: "bind", source: aFs, options: ["ro", "rbind"] })])

        const b = yield* s.prepare("b", "a@1")
        const [bm] = b
        expect(bm?.type).toBe("overlay")
        expect(bm?.source).toBe("overlay")
        const bUpper = fsOf(b)
        const bDir = NodePath.dirname(bUpper)
        expect(bm?.options).toEqual([`workdir=${bDir}/work`, `upperdir=${bDir}/fs`, `lowerdir=${aFs}`])
        // preparing copies nothing
        expect(fs.readdirSync(bUpper)).toEqual([])
        expect(fs.readdirSync(NodePath.join(bDir, "work"))).toEqual([])
        expect((yield* s.mounts("b"))).toEqual(b)
        yield* s.commit("b@1", "b")
        expect((yield* s.mounts("b@1"))[0]?.options).toEqual(["ro", `lowerdir=${bUpper}:${aFs}`])

        const c = yield* s.prepare("c", "b@1")
        const cDir = NodePath.dirname(fsOf(c))
        expect(c[0]?.options).toEqual([`workdir=${cDir}/work`, `upperdir=${cDir}/fs`, `lowerdir=${bUpper}:${aFs}`])

        expect(yield* s.view("v0")).toEqual([expect.objectContaining({ type: "bind", options: ["ro", "rbind"] })])
        expect(yield* s.view("v1", "a@1")).toEqual([expect.objectContaining({ type: "bind", source: aFs, options: ["ro", "rbind"] })])
        const v2 = yield* s.view("v2", "b@1")
        expect(v2[0]).toMatchObject({ type: "overlay", options: ["ro", `lowerdir=${bUpper}:${aFs}`] })
        expect(yield* s.mounts("v2")).toEqual(v2)
      })))

  it.scopedLive("records, labels, errors, usage of the own upper directory, removal leaf first", () =>
    withOverlay((root) =>
      Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const base = upperDirOf(yield* s.prepare("base", undefined, { labels: { l: "1" } }))
        fs.writeFileSync(NodePath.join(base, "big"), new Uint8Array(256 * 1024).fill(1))
        yield* s.commit("base@1", "base", { labels: { m: "2" } })
        const child = upperDirOf(yield* s.prepare("child", "base@1"))
        fs.writeFileSync(NodePath.join(child, "small"), "x")
        expect((yield* s.usage("base@1")).inodes).toBe(2)
        const usage = yield* s.usage("child")
        expect(usage.inodes).toBe(2)
        expect(usage.size).toBeLessThan(64 * 1024)
        expect((yield* s.walk).map((i) => [i.key, i.kind, i.parent ?? null, i.labels])).toEqual([
          ["base@1", "committed", null, { l: "1", m: "2" }],
          ["child", "active", "base@1", {}]
        ])
        expect(yield* Effect.flip(s.prepare("child", "base@1"))).toEqual(new Snapshotter.SnapshotExists({ key: "child" }))
        expect(yield* Effect.flip(s.prepare("x", "child"))).toMatchObject({ _tag: "InvalidSnapshotState", key: "child" })
        expect(yield* Effect.flip(s.remove("base@1"))).toEqual(
          new Snapshotter.SnapshotHasChildren({ key: "base@1", children: ["child"] })
        )
        yield* s.remove("child")
        yield* s.remove("base@1")
        expect(fs.readdirSync(NodePath.join(root, "snapshots"))).toEqual([])
        expect(yield* Effect.flip(s.mounts("base@1"))).toEqual(new Snapshotter.SnapshotNotFound({ key: "base@1" }))
      })))

  it.scopedLive("a native state directory's records read the same with the overlay layout", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      yield* Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        yield* s.prepare("n", undefined, { labels: { k: "v" } })
        yield* s.commit("n@1", "n")
      }).pipe(Effect.provide(NativeSnapshotter.layer({ root }).pipe(Layer.provide(Metadata.layer({ root })))))
      const infos = yield* Effect.flatMap(Snapshotter.Snapshotter, (s) => s.walk).pipe(Effect.provide(overlay(root)))
      expect(infos.map((i) => [i.key, i.kind, i.labels])).toEqual([["n@1", "committed", { k: "v" }]])
    }))
})

/** Build a chain of committed snapshots, each filled from one directory; returns their keys. */
const fillChain = (dirs: ReadonlyArray<string>, whiteouts: "device" | "file" = isRoot ? "device" : "file") =>
  Effect.gen(function*() {
    const s = yield* Snapshotter.Snapshotter
    const keys: Array<string> = []
    for (const [i, dir] of dirs.entries()) {
      const key = `s${i}`
      const mounts = yield* s.prepare(key, keys.at(-1))
      yield* fillOverlay(mounts, dir, { whiteouts })
      if (canMount && whiteouts === "device" && i > 0) {
        // the kernel's view of the active snapshot, before it is committed
        expect(withKernelMount(mounts, manifest)).toEqual(manifest(dir))
      }
      yield* s.commit(`${key}@1`, key)
      keys.push(`${key}@1`)
    }
    return keys
  })

describe("fillOverlay", () => {
  it.scopedLive("writes only the changes: a changed file, whiteouts, a copied-up directory; merged views equal the sources", () =>
    withOverlay((root) =>
      Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const one = NodePath.join(root, "one")
        const two = NodePath.join(root, "two")
        for (const dir of [one]) {
          fs.mkdirSync(NodePath.join(dir, "etc/deep"), { recursive: true })
          fs.mkdirSync(NodePath.join(dir, "usr/lib"), { recursive: true })
          for (let i = 0; i < 20; i++) fs.writeFileSync(NodePath.join(dir, "usr/lib", `lib${i}.so`), `lib ${i}`)
          fs.writeFileSync(NodePath.join(dir, "etc/deep/conf"), "v1")
          fs.writeFileSync(NodePath.join(dir, "etc/gone"), "bye")
          fs.mkdirSync(NodePath.join(dir, "var/cache/x"), { recursive: true })
          fs.writeFileSync(NodePath.join(dir, "var/cache/x/y"), "y")
          fs.symlinkSync("lib0.so", NodePath.join(dir, "usr/lib/link"))
        }
        // cp -a keeps every time: `two` starts equal to `one`
        execFileSync("cp", ["-a", one, two])
        fs.writeFileSync(NodePath.join(two, "etc/deep/conf"), "v2")
        nanoTouch(NodePath.join(two, "etc/deep/conf"), 1_700_000_000_123_456_789n)
        fs.rmSync(NodePath.join(two, "etc/gone"))
        fs.rmSync(NodePath.join(two, "var/cache"), { recursive: true })
        fs.rmSync(NodePath.join(two, "usr/lib/lib3.so"))
        fs.mkdirSync(NodePath.join(two, "usr/lib/lib3.so"))
        fs.writeFileSync(NodePath.join(two, "usr/lib/lib3.so/inner"), "now a directory")
        fs.linkSync(NodePath.join(two, "usr/lib/lib1.so"), NodePath.join(two, "usr/lib/lib1-again.so"))

        const keys = yield* fillChain([one, two])
        // the committed child's own directory comes first in its read-only overlay
        const own = (yield* s.mounts(keys[1]!))[0]!.options[1]!.slice("lowerdir=".length).split(":")[0]!
        expect(listing(own)).toEqual([
          "etc",
          "etc/deep",
          "etc/deep/conf",
          isRoot ? "etc/gone" : "etc/.wh.gone",
          "usr",
          "usr/lib",
          "usr/lib/lib1-again.so",
          "usr/lib/lib1.so",
          "usr/lib/lib3.so",
          "usr/lib/lib3.so/inner",
          "var",
          isRoot ? "var/cache" : "var/.wh.cache"
        ].sort())
        if (isRoot) expect(fs.lstatSync(NodePath.join(own, "etc/gone")).isCharacterDevice()).toBe(true)
        // whiteouts carry the time their layer entries get, not the moment they were made
        for (const whiteout of isRoot ? ["etc/gone", "var/cache"] : ["etc/.wh.gone", "var/.wh.cache"]) {
          expect(fs.lstatSync(NodePath.join(own, whiteout)).mtimeMs).toBe(0)
        }
        expect(fs.statSync(NodePath.join(own, "usr/lib/lib1.so")).ino).toBe(fs.statSync(NodePath.join(own, "usr/lib/lib1-again.so")).ino)
        expect(mergedManifest(treeOf(yield* s.mounts(keys[0]!)))).toEqual(sourceManifest(one))
        expect(mergedManifest(treeOf(yield* s.mounts(keys[1]!)))).toEqual(sourceManifest(two))
        if (canMount) expect(withKernelMount(yield* s.mounts(keys[1]!), manifest)).toEqual(manifest(two))
      })))
})

describe("fillOverlay refuses", () => {
  it.scopedLive("names an overlay reads as whiteouts, and read-only or foreign mounts", () =>
    withOverlay((root) =>
      Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const src = NodePath.join(root, "src")
        fs.mkdirSync(NodePath.join(src, "d"), { recursive: true })
        fs.writeFileSync(NodePath.join(src, "d/.wh.sneaky"), "")
        const mounts = yield* s.prepare("a")
        const error = yield* Effect.flip(fillOverlay(mounts, src))
        expect(error).toMatchObject({ _tag: "SnapshotterError", op: "fill", key: src })
        expect(error.reason).toContain("d/.wh.sneaky")
        fs.rmSync(NodePath.join(src, "d/.wh.sneaky"))
        yield* fillOverlay(mounts, src)
        yield* s.commit("a@1", "a")
        const readonly = yield* Effect.flip(fillOverlay(yield* s.mounts("a@1"), src))
        expect(readonly.reason).toBe("the mount is read-only")
        const foreign = new Mount.Mount({ type: "tmpfs", source: "tmpfs", options: [] })
        expect((yield* Effect.flip(fillOverlay([foreign], src))).reason).toContain("tmpfs")
      })))
})

const chainArb = fc.record({
  first: fc.array(opArb, { minLength: 1, maxLength: 25 }),
  second: fc.array(opArb, { minLength: 1, maxLength: 15 }),
  third: fc.array(opArb, { minLength: 1, maxLength: 15 }),
  // without root only `.wh.` files can be written; as root both forms are tried
  whiteouts: isRoot ? fc.constantFrom("device" as const, "file" as const) : fc.constant("file" as const)
})

describe("fillOverlay on random chains", () => {
  it.scopedLive.prop(
    "each committed snapshot's merged view equals its source directory, in user space and in the kernel",
    { chain: chainArb },
    ({ chain }) =>
      withOverlay((root) =>
        Effect.gen(function*() {
          const s = yield* Snapshotter.Snapshotter
          const specs: Array<Spec> = []
          let spec: Spec = new Map()
          for (const ops of [chain.first, chain.second, chain.third]) {
            spec = applyOps(cloneSpec(spec), ops)
            specs.push(spec)
          }
          const dirs = specs.map((each, i) => {
            const dir = NodePath.join(root, `src${i}`)
            fs.mkdirSync(dir)
            materialize(each, dir)
            return dir
          })
          const keys = yield* fillChain(dirs, chain.whiteouts)
          for (const [i, key] of keys.entries()) {
            expect(mergedManifest(treeOf(yield* s.mounts(key)))).toEqual(sourceManifest(dirs[i]!))
          }
          if (canMount && chain.whiteouts === "device") expect(withKernelMount(yield* s.mounts(keys[2]!), manifest)).toEqual(manifest(dirs[2]!))
        })),
    { fastCheck: { numRuns: 25 } }
  )
})
