/**
 * The walking differ: what the layer holds (checked with GNU tar), diffIDs against the fully
 * decompressed blob, reproducibility, labels, refs and ingests on failure and interruption.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import type * as Scope from "effect/Scope"
import { decompress as zstdDecompress } from "zstd-napi"
import * as ContentStore from "../src/ContentStore.js"
import * as Differ from "../src/Differ.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { tempDir } from "./support/trees.js"
import * as WalkingDiffer from "../src/WalkingDiffer.js"
import * as WorkerThreads from "../src/WorkerThreads.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = WalkingDiffer.layer.pipe(Layer.provide(WorkerThreads.layer), Layer.provideMerge(MemoryContentStore.layer))

const temp = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.map(Effect.acquireRelease(Effect.sync(() => tempDir(prefix)), (t) => Effect.sync(t.remove)), (t) => t.dir)

const write = (root: string, rel: string, content: string | Buffer, mtime = 1_600_000_000): void => {
  fs.mkdirSync(`${root}/${rel}`.replace(/\/[^/]*$/, ""), { recursive: true })
  fs.writeFileSync(`${root}/${rel}`, content)
  fs.utimesSync(`${root}/${rel}`, mtime, mtime)
}

const uncompressed = (blob: Buffer, compression: Oci.Compression): Buffer =>
  compression === "gzip" ? zlib.gunzipSync(blob) : compression === "zstd" ? zstdDecompress(blob) : blob

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

/** GNU tar's verbose listing of a layer (numeric owners, full times). */
const gnuList = (tar: Buffer, verbose = false): Array<string> =>
  execFileSync("tar", [verbose ? "-tvf" : "-tf", "-", "--numeric-owner", "--full-time"], { input: tar })
    .toString("utf8")
    .split("\n")
    .filter((line) => line.length > 0)

const diffBlob = (lower: ReadonlyArray<Mount.Mount>, upper: ReadonlyArray<Mount.Mount>, options?: Differ.DiffOptions) =>
  Effect.gen(function*() {
    const differ = yield* Differ.Differ
    const layer = yield* differ.diffMounts(lower, upper, options)
    const blob = yield* ContentStore.readAll(layer.digest)
    const info = yield* (yield* ContentStore.ContentStore).info(layer.digest)
    return { layer, blob, info, tar: uncompressed(blob, options?.compression ?? "gzip") }
  })

/** Two trees exercising most of the format. */
const fixture = Effect.gen(function*() {
  const root = yield* temp("differ")
  const lower = `${root}/lower`
  const upper = `${root}/upper`
  for (const dir of [lower, upper]) {
    write(dir, "keep/same.txt", "same")
    write(dir, "keep/changed.txt", "old")
    write(dir, "gone/deep/file", "x")
    write(dir, "was-file", "file")
    write(dir, "was-dir/inner", "inner")
    write(dir, "same-second", "aaaa")
  }
  write(upper, "keep/changed.txt", "new!")
  write(upper, "same-second", "bbbb")
  fs.rmSync(`${upper}/gone`, { recursive: true })
  fs.rmSync(`${upper}/was-file`)
  write(upper, "was-file/child", "c")
  fs.rmSync(`${upper}/was-dir`, { recursive: true })
  write(upper, "was-dir", "now a file")
  const long = `${"d".repeat(90)}/${"f".repeat(120)}`
  write(upper, long, "long")
  write(upper, "ünï/日本.txt", "utf8")
  write(upper, "a-b", "dash")
  write(upper, "a/b", "slash")
  write(upper, "links/one", "linked")
  fs.linkSync(`${upper}/links/one`, `${upper}/links/two`)
  fs.symlinkSync("../keep/same.txt", `${upper}/links/sym`)
  execFileSync("mkfifo", [`${upper}/links/fifo`])
  const server = yield* Effect.acquireRelease(
    Effect.async<import("node:net").Server>((resume) => {
      import("node:net").then((net) => {
        const s = net.createServer()
        s.listen(`${upper}/links/socket`, () => resume(Effect.succeed(s)))
      })
    }),
    (s) => Effect.sync(() => s.close())
  )
  void server
  for (const dir of ["keep", "links", "a", "ünï", "was-file", "d".repeat(90)]) fs.utimesSync(`${upper}/${dir}`, 1_600_000_000, 1_600_000_000)
  return { lower, upper, long }
})

// a fresh store per test: several tests look at its ingests
const live = <A, E>(name: string, body: () => Effect.Effect<A, E, Differ.Differ | ContentStore.ContentStore | Scope.Scope>) =>
  it.scopedLive(name, () => body().pipe(Effect.provide(services)))

describe("WalkingDiffer.layer", () => {
  live("writes the changes in path order, parents once, whiteouts, links, PAX names", () =>
    Effect.gen(function*() {
      const { long, lower, upper } = yield* fixture
      const { tar } = yield* diffBlob([Mount.bind(lower, true)], [Mount.bind(upper, true)], { compression: "none" })
      expect(gnuList(tar)).toEqual([
        "./",
        // whiteouts come before their siblings
        "gone/",
        "a/",
        "a/b",
        "a-b",
        `${"d".repeat(90)}/`,
        `${long}`,
        "keep/",
        "keep/changed.txt",
        "links/",
        "links/fifo",
        "links/one",
        "links/sym",
        "links/two",
        "same-second",
        "was-dir",
        "was-file/",
        "was-file/.wh..wh..opq",
        "was-file/child",
        "ünï/",
        "ünï/日本.txt"
      ].map((n) => (n === "gone/" ? ".wh.gone" : n)))
      const verbose = gnuList(tar, true)
      expect(verbose.find((l) => l.includes("links/two"))).toMatch(/^h.* links\/two link to links\/one$/)
      expect(verbose.find((l) => l.includes("links/sym"))).toMatch(/^l.* links\/sym -> \.\.\/keep\/same\.txt$/)
      expect(verbose.find((l) => l.includes("links/fifo"))).toMatch(/^p/)
      expect(verbose.find((l) => l.includes(".wh.gone"))).toMatch(/ 0\/0 +0 1970-01-01 00:00:00 \.wh\.gone$/)
      expect(verbose.find((l) => l.includes("keep/changed.txt"))).toMatch(/ 0\/0 +4 2020-09-13 12:26:40 keep\/changed.txt$/)
      // ustar magic, empty uname/gname, two end blocks and nothing after them
      expect(tar.subarray(257, 265).toString("latin1")).toBe("ustar\u000000")
      expect(tar.subarray(265, 329).every((b) => b === 0)).toBe(true)
      expect(tar.subarray(tar.length - 1024).every((b) => b === 0)).toBe(true)
      expect(tar.length % 512).toBe(0)
    }))

  live("diffID is the sha256 of the whole decompressed blob, which GNU tar reads, for every compression", () =>
    Effect.gen(function*() {
      const { lower, upper } = yield* fixture
      const digests = new Set<string>()
      for (const compression of ["gzip", "zstd", "none"] as const) {
        for (const docker of [false, true]) {
          const { blob, info, layer, tar } = yield* diffBlob([Mount.bind(lower, true)], [Mount.bind(upper, true)], {
            compression,
            docker
          })
          expect(layer.mediaType).toBe(Oci.layerMediaType(compression, docker))
          expect(layer.size).toBe(blob.length)
          expect(layer.digest).toBe(sha256(blob))
          expect(info.labels[Oci.LabelUncompressed]).toBe(sha256(tar))
          expect(gnuList(tar).length).toBe(21)
          digests.add(sha256(tar))
        }
      }
      // the uncompressed layer is the same whatever the compression
      expect(digests.size).toBe(1)
    }))

  live("is reproducible across runs and concurrency settings", () =>
    Effect.gen(function*() {
      const { lower, upper } = yield* fixture
      const root = yield* temp("differ-big")
      // bigger than one buffer, so coalescing and back-pressure take part
      write(root, "big", Buffer.alloc(3 << 20, 7))
      write(root, "random", createHash("sha512").update("seed").digest().toString("hex").repeat(20_000))
      const differ = yield* Differ.Differ
      const jobs = [
        [[Mount.bind(lower, true)], [Mount.bind(upper, true)]],
        [[], [Mount.bind(root, true)]],
        [[Mount.bind(upper, true)], [Mount.bind(lower, true)]],
        [[Mount.bind(root, true)], []]
      ] as const
      const run = (concurrency: number, compression: Oci.Compression) =>
        Effect.forEach(jobs, ([l, u]) => Effect.map(differ.diffMounts(l, u, { compression }), (d) => d.digest), {
          concurrency
        })
      for (const compression of ["gzip", "zstd"] as const) {
        const first = yield* run(1, compression)
        expect(yield* run(4, compression)).toEqual(first)
        expect(yield* run(1, compression)).toEqual(first)
        expect(new Set(first).size).toBe(jobs.length)
      }
    }))

  live("an unchanged tree gives the empty layer; same-second files are compared by content", () =>
    Effect.gen(function*() {
      const root = yield* temp("differ-same")
      for (const dir of ["l", "u"]) {
        write(`${root}/${dir}`, "f", "same")
        write(`${root}/${dir}`, "g", "same")
        fs.utimesSync(`${root}/${dir}`, 1, 1)
      }
      const same = yield* diffBlob([Mount.bind(`${root}/l`, true)], [Mount.bind(`${root}/u`, true)], { compression: "none" })
      expect(same.tar).toEqual(Buffer.alloc(1024))
      write(`${root}/u`, "g", "diff")
      fs.utimesSync(`${root}/u`, 1, 1)
      const changed = yield* diffBlob([Mount.bind(`${root}/l`, true)], [Mount.bind(`${root}/u`, true)], {
        compression: "none"
      })
      expect(gnuList(changed.tar)).toEqual(["g"])
      // nanoseconds differ: changed without reading, even with equal contents
      fs.utimesSync(`${root}/u/g`, 1_600_000_000.5, 1_600_000_000.5)
      write(`${root}/u`, "g", "same", 1_600_000_000.5)
      fs.utimesSync(`${root}/l/g`, 1_600_000_000.25, 1_600_000_000.25)
      fs.utimesSync(`${root}/u`, 1, 1)
      const nanos = yield* diffBlob([Mount.bind(`${root}/l`, true)], [Mount.bind(`${root}/u`, true)], { compression: "none" })
      expect(gnuList(nanos.tar)).toEqual(["g"])
    }))

  live("clamps mtimes to sourceDateEpoch", () =>
    Effect.gen(function*() {
      const root = yield* temp("differ-epoch")
      write(root, "new", "x", 2_000_000_000)
      write(root, "old", "x", 1_000)
      const { tar } = yield* diffBlob([], [Mount.bind(root, true)], { compression: "none", sourceDateEpoch: 1_000_000 })
      const lines = gnuList(tar, true)
      expect(lines[0]).toMatch(/1970-01-12 13:46:40 \.\/$/)
      expect(lines[1]).toMatch(/1970-01-12 13:46:40 new$/)
      expect(lines[2]).toMatch(/1970-01-01 00:16:40 old$/)
    }))

  live("reads an overlay mount merged in user space: whiteout devices and opaque dirs", () =>
    Effect.gen(function*() {
      const root = yield* temp("differ-overlay")
      const [low, up, flat] = [`${root}/low`, `${root}/up`, `${root}/flat`]
      write(low, "kept", "k")
      write(low, "deleted", "d")
      write(low, "opaque/old", "o")
      write(low, "merged/old", "m")
      write(up, "merged/new", "n")
      write(up, "opaque/new", "n")
      write(up, "opaque/.wh..wh..opq", "")
      write(up, ".wh.kept-too", "")
      write(low, "kept-too", "gone")
      execFileSync("mknod", [`${up}/deleted`, "c", "0", "0"])
      write(flat, "kept", "k")
      write(flat, "merged/old", "m")
      write(flat, "merged/new", "n")
      write(flat, "opaque/new", "n")
      // every entry one time, the roots too: written a second apart (a busy machine), the two
      // trees would differ in their mtimes, not in what the merge gives
      for (const tree of [low, up, flat]) {
        for (const name of ["", ...fs.readdirSync(tree, { recursive: true, encoding: "utf8" })]) {
          fs.lutimesSync(path.join(tree, name), 5, 5)
        }
      }
      const overlay = new Mount.Mount({ type: "overlay", source: "overlay", options: [`lowerdir=${low}`, `upperdir=${up}`] })
      const merged = yield* diffBlob([], [overlay], { compression: "none" })
      const plain = yield* diffBlob([], [Mount.bind(flat, true)], { compression: "none" })
      expect(gnuList(merged.tar)).toEqual(["./", "kept", "merged/", "merged/new", "merged/old", "opaque/", "opaque/new"])
      expect(merged.layer.digest).toBe(plain.layer.digest)
    }))

  live("repairs the uncompressed label of a blob that already exists", () =>
    Effect.gen(function*() {
      const { lower, upper } = yield* fixture
      const first = yield* diffBlob([Mount.bind(lower, true)], [Mount.bind(upper, true)], { labels: { a: "1" } })
      const store = yield* ContentStore.ContentStore
      yield* store.update(first.layer.digest, { [Oci.LabelUncompressed]: "" })
      const again = yield* diffBlob([Mount.bind(lower, true)], [Mount.bind(upper, true)], { labels: { b: "2" } })
      expect(again.layer).toEqual(first.layer)
      expect(again.info.labels[Oci.LabelUncompressed]).toBe(sha256(first.tar))
      expect(again.info.labels["b"]).toBe("2")
      expect(yield* store.statuses).toEqual([])
    }))

  live("truncates a reused reference first", () =>
    Effect.gen(function*() {
      const { lower, upper } = yield* fixture
      const store = yield* ContentStore.ContentStore
      yield* Effect.scoped(Effect.flatMap(store.writer({ ref: "reused" }), (w) => w.write(new Uint8Array(100).fill(1))))
      expect((yield* store.status("reused")).offset).toBe(100)
      const { blob, layer } = yield* diffBlob([Mount.bind(lower, true)], [Mount.bind(upper, true)], { reference: "reused" })
      expect(layer.digest).toBe(sha256(blob))
      expect(yield* store.statuses).toEqual([])
    }))

  live("fails with DiffFailed and leaves no ingest behind", () =>
    Effect.gen(function*() {
      const root = yield* temp("differ-fail")
      const differ = yield* Differ.Differ
      const store = yield* ContentStore.ContentStore
      const missing = yield* Effect.flip(differ.diffMounts([], [Mount.bind(`${root}/missing`, true)], { reference: "r1" }))
      expect(missing).toMatchObject({ _tag: "DiffFailed", step: "walk" })
      const badMount = yield* Effect.flip(differ.diffMounts([], [new Mount.Mount({ type: "nfs", source: "x", options: [] })]))
      expect(badMount).toMatchObject({ _tag: "DiffFailed", step: "mount" })
      const badLevel = yield* Effect.flip(differ.diffMounts([], [], { level: 42 }))
      expect(badLevel).toMatchObject({ _tag: "DiffFailed", step: "options" })
      expect(yield* store.statuses).toEqual([])
    }))

  live("a reference another writer holds is ContentLocked, and that writer's ingest is left alone", () =>
    Effect.gen(function*() {
      const root = yield* temp("differ-locked")
      const differ = yield* Differ.Differ
      const store = yield* ContentStore.ContentStore
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* store.writer({ ref: "held" })
        yield* other.write(new Uint8Array(10).fill(7))
        const locked = yield* Effect.flip(differ.diffMounts([], [Mount.bind(root, true)], { reference: "held" }))
        expect(locked).toMatchObject({ _tag: "ContentLocked", ref: "held" })
        expect((yield* store.status("held")).offset).toBe(10)
      }))
    }))

  live("an interrupted diff aborts its ingest", () =>
    Effect.gen(function*() {
      const root = yield* temp("differ-interrupt")
      for (let i = 0; i < 8; i++) write(root, `f${i}`, createHash("sha512").update(String(i)).digest().toString("base64").repeat(100_000))
      const differ = yield* Differ.Differ
      const store = yield* ContentStore.ContentStore
      const fiber = yield* Effect.fork(differ.diffMounts([], [Mount.bind(root, true)], { reference: "interrupted", level: 9 }))
      yield* Effect.sleep("30 millis")
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* store.statuses).toEqual([])
      expect((yield* store.walk()).length).toBe(0)
    }))
})

