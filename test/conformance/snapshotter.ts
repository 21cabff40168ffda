/**
 * The Snapshotter conformance suite: the behaviour every snapshotter layer must show on a real
 * disk, registered once per layer by `snapshotterSuite(name, layer)`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, type Layer } from "effect"
import * as FastCheck from "effect/FastCheck"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Mount from "../../src/Mount.js"
import * as Snapshotter from "../../src/Snapshotter.js"

/** What a suite run may relax for a given implementation. */
export interface SuiteOptions {
  /** The finest time step the snapshotter keeps (1n: nanoseconds; 1000n: microseconds). */
  readonly timeResolutionNs?: bigint
  /**
   * The directory showing a snapshot's mounts, readable and writable as they allow (default:
   * a bind mount's source); a layer whose mounts need the kernel passes one that mounts them.
   */
  readonly dirOf?: (mounts: ReadonlyArray<Mount.Mount>) => string
  /** A child reads its parent's files until it changes them (overlay) instead of owning a copy. */
  readonly sharesParentFiles?: boolean
}

const isRoot = process.getuid?.() === 0

const snap = Snapshotter.Snapshotter

/** The directory a snapshot's mounts show (bind mounts: their source). */
export const dirOf = (mounts: ReadonlyArray<Mount.Mount>): string => {
  const [mount] = mounts
  expect(mounts).toHaveLength(1)
  expect(mount?.type).toBe("bind")
  return mount?.source ?? ""
}

const write = (dir: string, rel: string, data: string | Uint8Array) => {
  fs.mkdirSync(NodePath.dirname(NodePath.join(dir, rel)), { recursive: true })
  fs.writeFileSync(NodePath.join(dir, rel), data)
}

const read = (dir: string, rel: string) => fs.readFileSync(NodePath.join(dir, rel), "utf8")

/** Set times with nanoseconds (Node's utimes rounds to microseconds; GNU touch does not). */
const touch = (path: string, which: "-a" | "-m", ns: bigint) => {
  const s = ns / 1_000_000_000n
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0")
  execFileSync("touch", ["-h", which, "-d", `@${s}.${frac}`, path])
}

/** One entry of a captured tree: everything a layer diff looks at. */
interface Entry {
  readonly type: string
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly mtime: bigint
  readonly size?: bigint
  readonly target?: string
  readonly sha256?: string
  /** the first path (in sorted order) of this entry's inode among the tree's hard links */
  readonly link?: string
}

const typeOf = (s: fs.BigIntStats) =>
  s.isDirectory()
    ? "dir"
    : s.isFile()
    ? "file"
    : s.isSymbolicLink()
    ? "symlink"
    : s.isFIFO()
    ? "fifo"
    : s.isCharacterDevice()
    ? "char"
    : s.isBlockDevice()
    ? "block"
    : "other"

/**
 * A tree's entries by relative path. Everything is stat'ed before any file is read, since
 * reading moves atimes; mtimes are cut to `resolution`.
 */
export const capture = (root: string, resolution = 1n): Map<string, Entry> => {
  const stats = new Map<string, fs.BigIntStats>()
  const visit = (rel: string) => {
    const s = fs.lstatSync(NodePath.join(root, rel), { bigint: true })
    stats.set(rel, s)
    if (s.isDirectory()) for (const name of fs.readdirSync(NodePath.join(root, rel))) visit(NodePath.join(rel, name))
  }
  visit(".")
  // hard-link groups inside this tree (a tree sharing its files with another links outside it)
  const firstOfInode = new Map<string, string>()
  const names = new Map<string, number>()
  for (const rel of [...stats.keys()].sort()) {
    const s = stats.get(rel)!
    if (s.isDirectory() || s.nlink === 1n) continue
    if (!firstOfInode.has(`${s.ino}`)) firstOfInode.set(`${s.ino}`, rel)
    names.set(`${s.ino}`, (names.get(`${s.ino}`) ?? 0) + 1)
  }
  const out = new Map<string, Entry>()
  for (const [rel, s] of stats) {
    const path = NodePath.join(root, rel)
    const type = typeOf(s)
    out.set(rel, {
      type,
      mode: Number(s.mode & 0o7777n),
      uid: Number(s.uid),
      gid: Number(s.gid),
      mtime: s.mtimeNs / resolution,
      ...(type === "file" ? { size: s.size, sha256: createHash("sha256").update(fs.readFileSync(path)).digest("hex") } : {}),
      ...(type === "symlink" ? { target: fs.readlinkSync(path) } : {}),
      ...(type !== "dir" && (names.get(`${s.ino}`) ?? 0) > 1 ? { link: firstOfInode.get(`${s.ino}`) ?? "" } : {})
    })
  }
  return out
}

const sorted = (tree: Map<string, Entry>) => [...tree.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

const errorTag = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>) =>
  Effect.flip(effect).pipe(Effect.map((e) => e._tag))

/** A small tree built from random operations: the property test's input. */
interface TreeOp {
  readonly path: ReadonlyArray<string>
  readonly kind: "file" | "dir" | "symlink" | "hardlink" | "fifo"
  readonly mode: number
  readonly content: Uint8Array
  readonly target: string
  readonly pick: number
  readonly mtimeNs: bigint | undefined
}

const treeOp: FastCheck.Arbitrary<TreeOp> = FastCheck.record({
  path: FastCheck.array(FastCheck.constantFrom("a", "b", "c", "dd", "e-f", ".h"), { minLength: 1, maxLength: 3 }),
  kind: FastCheck.constantFrom("file", "file", "dir", "symlink", "hardlink", "fifo"),
  mode: FastCheck.constantFrom(0o644, 0o600, 0o755, 0o4755, 0o444, 0o555, 0o1777, 0o700),
  content: FastCheck.uint8Array({ maxLength: 3000 }),
  target: FastCheck.constantFrom("a", "../b", "/etc/passwd", "missing/x", "."),
  pick: FastCheck.nat(),
  mtimeNs: FastCheck.option(FastCheck.bigInt(0n, 2_000_000_000_000_000_000n), { nil: undefined })
})

/** Apply random operations to `root`, skipping any that collide with what is there. */
const buildTree = (root: string, ops: ReadonlyArray<TreeOp>) => {
  const files: Array<string> = []
  const dirs: Array<{ path: string; mode: number }> = []
  const timed: Array<{ path: string; ns: bigint }> = []
  for (const op of ops) {
    const path = NodePath.join(root, ...op.path)
    const parent = NodePath.dirname(path)
    if (fs.existsSync(path) || isSymlink(path)) continue
    try {
      fs.mkdirSync(parent, { recursive: true })
    } catch {
      continue // a parent component is a file or symlink
    }
    if (!fs.lstatSync(parent).isDirectory()) continue
    switch (op.kind) {
      case "file":
        fs.writeFileSync(path, op.content)
        fs.chmodSync(path, op.mode)
        files.push(path)
        break
      case "dir":
        fs.mkdirSync(path)
        dirs.push({ path, mode: op.mode | 0o100 })
        break
      case "symlink":
        fs.symlinkSync(op.target, path)
        break
      case "hardlink": {
        const to = files[op.pick % Math.max(files.length, 1)]
        if (to === undefined) continue
        fs.linkSync(to, path)
        break
      }
      case "fifo":
        execFileSync("mkfifo", ["-m", (op.mode & 0o777).toString(8), path])
        break
    }
    if (op.mtimeNs !== undefined) timed.push({ path, ns: op.mtimeNs })
  }
  for (const { path, ns } of timed) touch(path, "-m", ns)
  // deepest first, so a read-only parent is set after its children
  for (const { path, mode } of dirs.reverse()) fs.chmodSync(path, mode)
}

const isSymlink = (path: string) => {
  try {
    return fs.lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

/** Register the whole suite for one snapshotter layer (each test gets a fresh instance). */
export const snapshotterSuite = (
  name: string,
  layer: Layer.Layer<Snapshotter.Snapshotter, unknown>,
  options: SuiteOptions = {}
) =>
  describe(`Snapshotter conformance: ${name}`, () => {
    const resolution = options.timeResolutionNs ?? 1n
    const open = options.dirOf ?? dirOf
    const copies = options.sharesParentFiles !== true
    const run = <A, E>(effect: Effect.Effect<A, E, Snapshotter.Snapshotter>) => effect.pipe(Effect.provide(layer))

    it.live("prepare gives an empty writable tree; commit turns it into a committed snapshot", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        const mounts = yield* s.prepare("a")
        expect(Mount.isReadonly(mounts[0]!)).toBe(false)
        const dir = open(mounts)
        expect(fs.readdirSync(dir)).toEqual([])
        write(dir, "hello.txt", "hello")
        expect((yield* s.stat("a")).kind).toBe("active")
        expect(open(yield* s.mounts("a"))).toBe(dir)

        yield* s.commit("a-done", "a")
        expect(yield* errorTag(s.stat("a"))).toBe("SnapshotNotFound")
        const info = yield* s.stat("a-done")
        expect(info.kind).toBe("committed")
        expect(info.parent).toBeUndefined()
        expect(info.createdAt.getTime()).toBeLessThanOrEqual(info.updatedAt.getTime())
        const committed = yield* s.mounts("a-done")
        expect(Mount.isReadonly(committed[0]!)).toBe(true)
        expect(read(open(committed), "hello.txt")).toBe("hello")
      })))

    it.live("a child starts as its parent's tree and its changes stay its own", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        const base = open(yield* s.prepare("base"))
        write(base, "etc/conf", "v1")
        write(base, "keep", "kept")
        yield* s.commit("base@1", "base")

        const left = open(yield* s.prepare("left", "base@1"))
        const right = open(yield* s.prepare("right", "base@1"))
        expect(left).not.toBe(right)
        expect(read(left, "etc/conf")).toBe("v1")
        write(left, "etc/conf", "left")
        fs.rmSync(NodePath.join(left, "keep"))
        write(right, "new", "right only")

        const parent = open(yield* s.mounts("base@1"))
        expect(read(parent, "etc/conf")).toBe("v1")
        expect(read(parent, "keep")).toBe("kept")
        expect(fs.existsSync(NodePath.join(parent, "new"))).toBe(false)
        expect(read(right, "etc/conf")).toBe("v1")
        expect(read(right, "keep")).toBe("kept")

        yield* s.commit("left@1", "left")
        expect((yield* s.stat("left@1")).parent).toBe("base@1")
        const grandchild = open(yield* s.prepare("gc", "left@1"))
        expect(read(grandchild, "etc/conf")).toBe("left")
        expect(fs.existsSync(NodePath.join(grandchild, "keep"))).toBe(false)
      })))

    it.live("a view is a read-only copy of its parent and cannot be committed", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        write(open(yield* s.prepare("p")), "f", "data")
        yield* s.commit("p@1", "p")
        const mounts = yield* s.view("v", "p@1", { labels: { purpose: "read" } })
        expect(Mount.isReadonly(mounts[0]!)).toBe(true)
        expect(read(open(mounts), "f")).toBe("data")
        expect(Mount.isReadonly((yield* s.mounts("v"))[0]!)).toBe(true)
        const info = yield* s.stat("v")
        expect(info.kind).toBe("view")
        expect(info.parent).toBe("p@1")
        expect(info.labels).toEqual({ purpose: "read" })

        const error = yield* Effect.flip(s.commit("v@1", "v"))
        expect(error).toBeInstanceOf(Snapshotter.InvalidSnapshotState)
        expect(error).toMatchObject({ key: "v", kind: "view" })
        // an empty view is fine too
        expect(fs.readdirSync(open(yield* s.view("empty-view")))).toEqual([])
      })))

    it.live("typed errors: existing keys, missing keys and parents, parents that are not committed", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        yield* s.prepare("x")
        expect(yield* Effect.flip(s.prepare("x"))).toEqual(new Snapshotter.SnapshotExists({ key: "x" }))
        expect(yield* Effect.flip(s.view("x"))).toEqual(new Snapshotter.SnapshotExists({ key: "x" }))
        expect(yield* Effect.flip(s.prepare("y", "nope"))).toEqual(new Snapshotter.SnapshotNotFound({ key: "nope" }))
        expect(yield* errorTag(s.stat("y"))).toBe("SnapshotNotFound")

        const onActive = yield* Effect.flip(s.prepare("y", "x"))
        expect(onActive).toBeInstanceOf(Snapshotter.InvalidSnapshotState)
        expect(onActive).toMatchObject({ key: "x", kind: "active" })

        yield* s.prepare("w")
        yield* s.commit("w@1", "w")
        yield* s.view("wv", "w@1")
        expect(yield* Effect.flip(s.prepare("y", "wv"))).toMatchObject({ _tag: "InvalidSnapshotState", key: "wv", kind: "view" })
        expect(yield* Effect.flip(s.commit("w@2", "w@1"))).toMatchObject({ _tag: "InvalidSnapshotState", kind: "committed" })
        expect(yield* Effect.flip(s.commit("w@1", "x"))).toEqual(new Snapshotter.SnapshotExists({ key: "w@1" }))
        expect((yield* s.stat("x")).kind).toBe("active")

        for (const op of [s.commit("z@1", "z"), s.mounts("z"), s.stat("z"), s.usage("z"), s.remove("z"), s.update("z", { a: "b" })]) {
          expect(yield* Effect.flip(op)).toEqual(new Snapshotter.SnapshotNotFound({ key: "z" }))
        }
        // nothing half-made by the failed calls
        expect((yield* s.walk).map((i) => i.key)).toEqual(["w@1", "wv", "x"])
      })))

    it.live("labels: given at prepare, merged by update (empty value deletes), carried and added by commit", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        yield* s.prepare("l", undefined, { labels: { a: "1", b: "2" } })
        expect((yield* s.stat("l")).labels).toEqual({ a: "1", b: "2" })
        const before = yield* s.stat("l")
        const updated = yield* s.update("l", { b: "", c: "3", a: "one" })
        expect(updated.labels).toEqual({ a: "one", c: "3" })
        expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(before.updatedAt.getTime())
        expect((yield* s.stat("l")).labels).toEqual({ a: "one", c: "3" })
        yield* s.commit("l@1", "l", { labels: { d: "4", c: "" } })
        expect((yield* s.stat("l@1")).labels).toEqual({ a: "one", d: "4" })
        // a later snapshot with the old key starts with no labels
        yield* s.prepare("l")
        expect((yield* s.stat("l")).labels).toEqual({})
      })))

    it.live("walk lists every snapshot with its kind, parent and labels", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        expect(yield* s.walk).toEqual([])
        yield* s.prepare("r", undefined, { labels: { n: "r" } })
        yield* s.commit("r@1", "r")
        yield* s.prepare("c", "r@1")
        yield* s.view("v", "r@1")
        const all = yield* s.walk
        expect(all.map((i) => [i.key, i.kind, i.parent ?? null, i.labels])).toEqual([
          ["c", "active", "r@1", {}],
          ["r@1", "committed", null, { n: "r" }],
          ["v", "view", "r@1", {}]
        ])
      })))

    it.live("remove refuses a snapshot with children, naming them, then removes leaf first", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        const root = open(yield* s.prepare("root"))
        write(root, "d/f", "x")
        // a read-only directory with content must not stop the removal
        fs.chmodSync(NodePath.join(root, "d"), 0o555)
        yield* s.commit("root@1", "root")
        yield* s.prepare("kid-b", "root@1")
        yield* s.view("kid-a", "root@1")
        const error = yield* Effect.flip(s.remove("root@1"))
        expect(error).toEqual(new Snapshotter.SnapshotHasChildren({ key: "root@1", children: ["kid-a", "kid-b"] }))
        expect(error.message).toContain("kid-a")

        const kidDir = open(yield* s.mounts("kid-b"))
        yield* s.remove("kid-b")
        // a directory of the snapshot's own is gone with it (a mount point of a shared one is not)
        if (copies) expect(fs.existsSync(kidDir)).toBe(false)
        expect(yield* errorTag(s.stat("kid-b"))).toBe("SnapshotNotFound")
        yield* s.remove("kid-a")
        const rootDir = open(yield* s.mounts("root@1"))
        yield* s.remove("root@1")
        expect(fs.existsSync(rootDir)).toBe(false)
        expect(yield* s.walk).toEqual([])
        expect(yield* Effect.flip(s.remove("root@1"))).toEqual(new Snapshotter.SnapshotNotFound({ key: "root@1" }))
        // the key is free again
        yield* s.prepare("root@1")
      })))

    it.live("usage counts the snapshot's own bytes and inodes, a hard-linked inode once", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        const dir = open(yield* s.prepare("u"))
        const empty = yield* s.usage("u")
        expect(empty.inodes).toBe(1)
        write(dir, "big", new Uint8Array(256 * 1024).fill(7))
        write(dir, "sub/small", "x")
        const filled = yield* s.usage("u")
        expect(filled.inodes).toBe(4)
        expect(filled.size - empty.size).toBeGreaterThanOrEqual(256 * 1024)
        expect(filled.size - empty.size).toBeLessThan(256 * 1024 + 64 * 1024)
        fs.linkSync(NodePath.join(dir, "big"), NodePath.join(dir, "sub", "big-again"))
        const linked = yield* s.usage("u")
        expect(linked.inodes).toBe(4)
        expect(linked.size).toBe(filled.size)
        // a child's usage is its own copy (or only its changes), the parent's is unchanged by the child's writes
        yield* s.commit("u@1", "u")
        const child = open(yield* s.prepare("u2", "u@1"))
        write(child, "more", new Uint8Array(128 * 1024).fill(1))
        expect((yield* s.usage("u@1")).inodes).toBe(4)
        expect((yield* s.usage("u2")).inodes).toBe(copies ? 5 : 2)
      })))

    it.live("keys are never paths: slashes, dots and odd characters are just names", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        const keys = ["../../escape", "a/b/c", "..", "/abs", "ключ ✓", "x\ny"]
        const dirs: Array<string> = []
        for (const key of keys) {
          const dir = open(yield* s.prepare(key))
          write(dir, "marker", key)
          dirs.push(dir)
          expect(dir).not.toContain("escape")
          expect(dir).not.toContain("ключ")
        }
        expect(new Set(dirs).size).toBe(keys.length)
        yield* s.commit("../../escape@1", "../../escape")
        const child = open(yield* s.prepare("a/../child", "../../escape@1"))
        expect(read(child, "marker")).toBe("../../escape")
        expect((yield* s.walk).map((i) => i.key).sort()).toEqual(
          ["../../escape@1", "a/../child", ...keys.filter((k) => k !== "../../escape")].sort()
        )
      })))

    it.live("two concurrent prepares of one key: one wins, the other gets SnapshotExists", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        write(open(yield* s.prepare("src")), "f", "x")
        yield* s.commit("src@1", "src")
        const results = yield* Effect.all([s.prepare("same", "src@1"), s.prepare("same", "src@1")], {
          concurrency: 2,
          mode: "either"
        })
        expect(results.filter(Either.isRight)).toHaveLength(1)
        expect(results.filter(Either.isLeft).map((e) => e.left._tag)).toEqual(["SnapshotExists"])
        expect((yield* s.walk).map((i) => i.key)).toEqual(["same", "src@1"])
      })))

    it.live("a child reproduces its parent's metadata: modes, owners, nanosecond times, links, fifos", () =>
      run(Effect.gen(function*() {
        const s = yield* snap
        const dir = open(yield* s.prepare("meta"))
        const p = (rel: string) => NodePath.join(dir, rel)
        write(dir, "plain", "plain")
        fs.chmodSync(p("plain"), 0o640)
        write(dir, "suid", "#!/bin/sh\n")
        fs.chmodSync(p("suid"), 0o4755)
        write(dir, "ro/inside", "locked in")
        fs.mkdirSync(p("empty"))
        fs.mkdirSync(p("sticky"), { mode: 0o755 })
        fs.chmodSync(p("sticky"), 0o1777)
        fs.symlinkSync("plain", p("rel-link"))
        fs.symlinkSync("/nonexistent/target", p("dangling"))
        fs.symlinkSync("ro", p("dir-link"))
        write(dir, "linked/one", "shared")
        fs.mkdirSync(p("elsewhere"))
        fs.linkSync(p("linked/one"), p("linked/two"))
        fs.linkSync(p("linked/one"), p("elsewhere/three"))
        execFileSync("mkfifo", ["-m", "0620", p("pipe")])
        write(dir, "big", new Uint8Array(1024 * 1024).map((_, i) => (i * 31) & 0xff))
        if (isRoot) {
          fs.lchownSync(p("plain"), 1234, 5678)
          fs.lchownSync(p("rel-link"), 4321, 8765)
          fs.lchownSync(p("empty"), 99, 98)
        }
        touch(p("plain"), "-m", 1_700_000_000_123_456_789n)
        touch(p("rel-link"), "-m", 1_600_000_000_987_654_321n)
        touch(p("linked/one"), "-m", 1_500_000_000_000_000_001n)
        touch(p("plain"), "-a", 1_234_567_890_111_222_333n)
        touch(p("empty"), "-m", 1_000_000_000_999_999_999n)
        touch(p("ro"), "-m", 1_111_111_111_111_111_111n)
        fs.chmodSync(p("ro"), 0o555)
        touch(dir, "-m", 1_222_222_222_222_222_222n)
        yield* s.commit("meta@1", "meta")

        const parentDir = open(yield* s.mounts("meta@1"))
        const parentAtime = fs.lstatSync(NodePath.join(parentDir, "plain"), { bigint: true }).atimeNs
        const child = open(yield* s.prepare("meta-child", "meta@1"))
        const childAtime = fs.lstatSync(NodePath.join(child, "plain"), { bigint: true }).atimeNs
        expect(childAtime / resolution).toBe(parentAtime / resolution)

        const before = capture(parentDir, resolution)
        const after = capture(child, resolution)
        expect(sorted(after)).toEqual(sorted(before))
        // the inputs really were what the test meant
        expect(after.get("plain")).toMatchObject({ mode: 0o640, mtime: 1_700_000_000_123_456_789n / resolution })
        expect(after.get("suid")?.mode).toBe(0o4755)
        expect(after.get("sticky")?.mode).toBe(0o1777)
        expect(after.get("ro")?.mode).toBe(0o555)
        expect(after.get("pipe")).toMatchObject({ type: "fifo", mode: 0o620 })
        expect(after.get("dangling")).toMatchObject({ type: "symlink", target: "/nonexistent/target" })
        expect(after.get("rel-link")?.mtime).toBe(1_600_000_000_987_654_321n / resolution)
        expect(after.get(".")?.mtime).toBe(1_222_222_222_222_222_222n / resolution)
        expect([after.get("linked/two")?.link, after.get("elsewhere/three")?.link]).toEqual([
          "elsewhere/three",
          "elsewhere/three"
        ])
        const one = fs.statSync(NodePath.join(child, "linked/one"))
        expect(fs.statSync(NodePath.join(child, "elsewhere/three")).ino).toBe(one.ino)
        expect(one.nlink).toBe(3)
        if (isRoot) {
          expect(after.get("plain")).toMatchObject({ uid: 1234, gid: 5678 })
          expect(after.get("rel-link")).toMatchObject({ uid: 4321, gid: 8765 })
          expect(after.get("empty")).toMatchObject({ uid: 99, gid: 98 })
        }
        // a view copies the same way
        expect(sorted(capture(open(yield* s.view("meta-view", "meta@1")), resolution))).toEqual(sorted(before))
        // the child is a copy, not the same inodes
        if (copies) expect(fs.statSync(NodePath.join(child, "big")).ino).not.toBe(fs.statSync(NodePath.join(parentDir, "big")).ino)
      })))

    it.live.prop(
      "prepare on a committed snapshot reproduces the parent's tree exactly",
      // replaceOnly (the caller only replaces entries) may share files, never change the tree
      { ops: FastCheck.array(treeOp, { maxLength: 14 }), replaceOnly: FastCheck.boolean() },
      ({ ops, replaceOnly }) =>
        run(Effect.gen(function*() {
          const s = yield* snap
          const dir = open(yield* s.prepare("t"))
          buildTree(dir, ops)
          yield* s.commit("t@1", "t")
          const parent = capture(open(yield* s.mounts("t@1")), resolution)
          const childDir = open(yield* s.prepare("t2", "t@1", { replaceOnly }))
          expect(sorted(capture(childDir, resolution))).toEqual(sorted(parent))
          // the child is writable and its writes stay out of the parent
          const exit = yield* Effect.exit(Effect.try(() => write(childDir, "new-file-only-here", "x")))
          expect(Exit.isSuccess(exit)).toBe(true)
          expect(capture(open(yield* s.mounts("t@1")), resolution).has("new-file-only-here")).toBe(false)
        })),
      { fastCheck: { numRuns: 20 } }
    )
  })
