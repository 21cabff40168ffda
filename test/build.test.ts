import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { BlobMapper, Blobchain, Build, Digest, Image, Oci, Progress, Snapshotter } from "../src/index.js"
import * as Source from "../src/Source.js"
import { Threads } from "../src/Threads.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Xattr from "../src/fs/xattr.js"
import * as zlib from "node:zlib"
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

// the stack's print threads, each request to them pushed onto `asked` by kind and directory
const countingPrints = <R>(context: Context.Context<R | Threads>, asked: Array<string>) => {
  const threads = Context.get(context, Threads)
  return Context.add(context, Threads, {
    ...threads,
    prints: {
      ...threads.prints,
      fingerprint: (dir) => (asked.push(`lines ${dir}`), threads.prints.fingerprint(dir)),
      digest: (dir) => (asked.push(`digest ${dir}`), threads.prints.digest(dir)),
      digests: (dir) => (asked.push(`digest ${dir}`), threads.prints.digests(dir)),
      statDigest: (dir) => (asked.push(`stat ${dir}`), threads.prints.statDigest(dir))
    }
  })
}

describe("Build", () => {
  it.scoped("a source changed while its layer is read is refused, nothing is recorded, and the next build takes the change", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      // layers of several MiB: the first MiB is out long before the last directory is read
      const big = () => {
        const dir = work.fresh("tree")
        for (let i = 0; i < 40; i++) write(dir, `d${i % 10}/f${i}`, `${i} `.repeat(40_000))
        return dir
      }
      const dirs = [big(), big()]
      write(dirs[1]!, "only-in-2", "two\n")
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const mapped = (keys: ReadonlyArray<string>) =>
        BlobMapper.BlobMapper.pipe(Effect.flatMap((m) => m.getMany(keys)), Effect.map((all) => all.map(Option.isSome)), Effect.provide(context))
      for (const changing of [0, 1]) {
        // the second directory's layer, too, is made of MiBs to read before d9/f39
        if (changing === 1) for (let i = 0; i < 4; i++) write(dirs[1]!, `a/big${i}`, `${i} `.repeat(200_000))
        const id0 = Source.directoryId(undefined, yield* Build.fingerprint(dirs[0]!))
        const ids = [id0, Source.directoryId(id0, yield* Build.fingerprint(dirs[1]!))]
        // the first MiB of the changing directory's layer is out: change a file still to be read
        let changed = false
        const progress = Progress.Progress.of({
          report: (event) => {
            if (changed || event._tag !== "Bytes") return
            changed = true
            fs.appendFileSync(path.join(dirs[changing]!, "d9/f39"), "and more\n")
          }
        })
        const build = Build.build(dirs, { concurrency: 1 }).pipe(Effect.provideService(Progress.Progress, progress))
        const error = yield* Effect.flip(build.pipe(Effect.provide(context)))
        expect(changed).toBe(true)
        expect(error._tag).toBe("InvalidSource")
        expect(error.message).toBe(`${dirs[changing]}: the directory changed while it was read`)
        // the changed directory's layer (and its child's) was not recorded
        expect(yield* mapped(ids.slice(changing))).toEqual(ids.slice(changing).map(() => false))
        const built = yield* Build.build(dirs).pipe(Effect.provide(context))
        expect(built.snapshots.map((s) => s.reused)).toEqual([changing === 1, false])
        const again = yield* Build.build(dirs).pipe(Effect.provide(context))
        expect(again.snapshots.map((s) => s.reused)).toEqual([true, true])
        expect(again.image.manifest.digest).toBe(built.image.manifest.digest)
      }
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

  it.live("a put's private copy is gone after its layer is made, and after an interrupted build", () =>
    Effect.scoped(Effect.gen(function*() {
      const root = work.fresh("state")
      const dirs = [tree(300)]
      const puts = [{ src: tree(1500), dest: "/srv/app" }, { src: tree(20), dest: "/srv/app/extra" }]
      // the copies go to the temp directory: a fresh one of this test's own
      const temp = work.fresh("tmp")
      fs.mkdirSync(temp)
      const saved = process.env.TMPDIR
      yield* Effect.acquireRelease(Effect.sync(() => void (process.env.TMPDIR = temp)), () =>
        Effect.sync(() => {
          if (saved === undefined) delete process.env.TMPDIR
          else process.env.TMPDIR = saved
        }))
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      for (const delay of [0, 10, 40, 150]) {
        const fiber = yield* Effect.fork(Build.build(dirs, { puts, compression: "none" }).pipe(Effect.provide(context)))
        yield* Effect.sleep(delay)
        yield* Fiber.interrupt(fiber)
        expect(fs.readdirSync(temp)).toEqual([])
      }
      const built = yield* Build.build(dirs, { puts, compression: "none" }).pipe(Effect.provide(context))
      expect(built.image.layers).toHaveLength(3)
      expect(fs.readdirSync(temp)).toEqual([])
      // the second put went into the first's directory: its layer holds just that
      const names = run("tar", ["-tf", path.join(root, "content", "blobs", "sha256", built.image.layers[2]!.digest.slice(7))])
        .split("\n").filter((n) => n !== "")
      expect(names).toContain("srv/app/extra/")
      expect(names.filter((n) => !n.startsWith("srv/app/extra/") && n !== "srv/" && n !== "srv/app/")).toEqual([])
    })))

  it.scoped("a build takes every directory's digest, and lines only for a layer it makes: a rerun takes none", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      const v1 = tree(30)
      const v2 = work.fresh("tree")
      fs.cpSync(v1, v2, { recursive: true, preserveTimestamps: true })
      write(v2, "d3/f3", "edited\n")
      write(v2, "new/file", "added\n")
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const asked: Array<string> = []
      const counted = countingPrints(context, asked)
      const built = yield* Build.build([v1, v2]).pipe(Effect.provide(counted))
      expect(built.snapshots.map((s) => s.reused)).toEqual([false, false])
      // the lines of the two trees the second layer compares, once each; the first layer walked
      // its tree whole and checks it by its digest after
      expect(asked.filter((a) => a.startsWith("lines")).sort()).toEqual([`lines ${v1}`, `lines ${v2}`].sort())
      expect(asked.filter((a) => a === `digest ${v1}`).length).toBe(2)
      asked.length = 0
      const again = yield* Build.build([v1, v2]).pipe(Effect.provide(counted))
      expect(again.snapshots.map((s) => s.reused)).toEqual([true, true])
      expect(again.image.manifest.digest).toBe(built.image.manifest.digest)
      // trees changed within the last second: their stat digests are not trusted, and they are printed whole
      expect(asked.sort()).toEqual([`digest ${v1}`, `digest ${v2}`, `stat ${v1}`, `stat ${v2}`].sort())
    }))

  it.live("a rerun over trees whose stats are recorded lists no attributes; an attribute set since is seen", () =>
    Effect.scoped(Effect.gen(function*() {
      const root = work.fresh("state")
      const v1 = tree(20)
      const v2 = work.fresh("tree")
      fs.cpSync(v1, v2, { recursive: true, preserveTimestamps: true })
      write(v2, "new/file", "added\n")
      Xattr.set(path.join(v2, "d1/f1"), "user.kept", Buffer.from("before"))
      // every change more than a second before the walks: their records are kept
      yield* Effect.sleep("1100 millis")
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const asked: Array<string> = []
      const counted = countingPrints(context, asked)
      const built = yield* Build.build([v1, v2]).pipe(Effect.provide(counted))
      asked.length = 0
      const again = yield* Build.build([v1, v2]).pipe(Effect.provide(counted))
      expect(again.snapshots.map((s) => s.reused)).toEqual([true, true])
      expect(again.snapshots.map((s) => s.id)).toEqual(built.snapshots.map((s) => s.id))
      expect(again.image.manifest.digest).toBe(built.image.manifest.digest)
      // the stat digests alone, found in the index: no walk listed an attribute
      expect(asked.sort()).toEqual([`stat ${v1}`, `stat ${v2}`].sort())
      // an attribute set since sets the file's ctime: v2 is printed whole and is a new layer
      // carrying the attribute's new value
      Xattr.set(path.join(v2, "d1/f1"), "user.kept", Buffer.from("after!"))
      asked.length = 0
      const third = yield* Build.build([v1, v2]).pipe(Effect.provide(counted))
      expect(third.snapshots.map((s) => s.reused)).toEqual([true, false])
      // (and the layer over v1 takes both trees' lines)
      expect(asked.sort()).toEqual([`digest ${v2}`, `lines ${v1}`, `lines ${v2}`, `stat ${v1}`, `stat ${v2}`].sort())
      const layer = third.image.layers[1]!.digest
      const listing = yield* Effect.flatMap(ContentStore.ContentStore, (store) => ContentStore.readAll(layer)).pipe(Effect.provide(context))
      expect(zlib.gunzipSync(listing).includes("SCHILY.xattr.user.kept=after!")).toBe(true)
    })))

  it.scoped("an edit in place that keeps size and mtime is a new layer, not a reused one", () =>
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
      // the file's ctime moved: its print changed, and the layer holds the new bytes
      expect(second.snapshots.map((s) => s.reused)).toEqual([false])
      expect(second.image.manifest.digest).not.toBe(first.image.manifest.digest)
      const third = yield* Build.build([dir]).pipe(Effect.provide(context))
      expect(third.snapshots.map((s) => s.reused)).toEqual([true])
      expect(third.image.manifest.digest).toBe(second.image.manifest.digest)
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

describe("bad options of a build's image", () => {
  it.scopedLive("a source date no image can carry, and tags the formats cannot hold, are typed errors", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(Blobchain.layerLocal({ root: work.fresh("state") }))
      const dir = tree(2)
      for (const epoch of [-1, 1.5, Image.maxSourceDateEpoch + 1, 99_999_999_999_999]) {
        const error = yield* Effect.flip(Effect.provide(Build.build([dir], { sourceDateEpoch: epoch }), context))
        expect(error._tag).toBe("InvalidOption")
      }
      const last = yield* Effect.provide(Build.build([dir], { sourceDateEpoch: Image.maxSourceDateEpoch }), context)
      expect(last.image.imageConfig.created).toBe("9999-12-31T23:59:59Z")
      const oci = yield* Effect.flip(Effect.provide(Image.writeOciLayout(last.image, work.fresh("out"), { tag: "no spaces" }), context))
      expect(oci).toMatchObject({ _tag: "InvalidTag", tag: "no spaces" })
      const docker = yield* Effect.flip(Effect.provide(Image.writeDockerArchive(last.image, work.fresh("out.tar"), { tag: "Upper/app:1" }), context))
      expect(docker).toMatchObject({ _tag: "InvalidTag", tag: "Upper/app:1" })
      // what the grammars allow is written
      yield* Effect.provide(Image.writeOciLayout(last.image, work.fresh("out"), { tag: "Team/App:v1.0" }), context)
      yield* Effect.provide(Image.writeDockerArchive(last.image, work.fresh("out.tar"), { tag: "localhost:5000/team/app:v1.0" }), context)
    }))
})
