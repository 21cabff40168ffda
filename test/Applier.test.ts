/**
 * The default applier: archives written by GNU tar, devices and fifos, opaque markers, the
 * diffID it reports, compression by media type and by magic bytes, and its typed failures.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as zlib from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type * as Scope from "effect/Scope"
import { compress as zstdCompress } from "zstd-napi"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Differ from "../src/Differ.js"
import * as Digest from "../src/Digest.js"
import * as Tar from "../src/archive/tar.js"
import { encoded as entry } from "./support/rawTar.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { manifest, tempDir } from "./support/trees.js"
import * as TarApplier from "../src/TarApplier.js"
import * as WalkingDiffer from "../src/WalkingDiffer.js"
import * as WorkerThreads from "../src/WorkerThreads.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = Layer.mergeAll(TarApplier.layer, WalkingDiffer.layer.pipe(Layer.provide(WorkerThreads.layer))).pipe(
  Layer.provideMerge(MemoryContentStore.layer)
)

const live = <A, E>(
  name: string,
  body: () => Effect.Effect<A, E, Applier.Applier | Differ.Differ | ContentStore.ContentStore | Scope.Scope>
) => it.scopedLive(name, () => body().pipe(Effect.provide(services)))

const temp = Effect.map(
  Effect.acquireRelease(Effect.sync(() => tempDir("applier")), (t) => Effect.sync(t.remove)),
  (t) => t.dir
)

const store = (bytes: Buffer, mediaType: string) =>
  Effect.map(
    ContentStore.writeBlob(`blob-${Digest.ofBytes(bytes)}`, bytes),
    (info) => new Oci.Descriptor({ mediaType, digest: info.digest, size: info.size })
  )

const apply = (descriptor: Oci.Descriptor, root: string, options?: Applier.ApplyOptions) =>
  Effect.flatMap(Applier.Applier, (a) => a.apply(descriptor, [Mount.bind(root, false)], options))

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

const sample = (root: string): void => {
  fs.mkdirSync(`${root}/${"d".repeat(120)}/ü`, { recursive: true })
  fs.writeFileSync(`${root}/${"d".repeat(120)}/ü/${"f".repeat(150)}`, "long")
  fs.writeFileSync(`${root}/plain`, "plain")
  fs.chmodSync(`${root}/plain`, 0o4750)
  fs.chownSync(`${root}/plain`, 1000, 1001)
  fs.linkSync(`${root}/plain`, `${root}/hard`)
  fs.symlinkSync(`../${"t".repeat(130)}`, `${root}/sym`)
  fs.mkdirSync(`${root}/empty`)
  fs.utimesSync(`${root}/empty`, 12345, 12345)
  fs.utimesSync(`${root}/plain`, 99_999, 99_999)
  fs.utimesSync(`${root}/${"d".repeat(120)}`, 5_000, 5_000)
}

describe("TarApplier.layer", () => {
  for (const format of ["gnu", "posix", "ustar"] as const) {
    live(`applies an archive written by GNU tar --format=${format}`, () =>
      Effect.gen(function*() {
        const root = yield* temp
        const source = `${root}/source`
        const target = `${root}/target`
        fs.mkdirSync(source)
        fs.mkdirSync(target)
        sample(source)
        if (format === "ustar") {
          // ustar cannot hold these long names
          fs.rmSync(`${source}/${"d".repeat(120)}`, { recursive: true })
          fs.rmSync(`${source}/sym`)
        }
        const tar = execFileSync("tar", [`--format=${format}`, "--numeric-owner", "-C", source, "-cf", "-", "."])
        const descriptor = yield* store(zlib.gzipSync(tar), Oci.MediaType.layerGzip)
        const diffId = yield* apply(descriptor, target)
        expect(diffId).toBe(sha256(tar))
        expect(manifest(target)).toEqual(manifest(source))
      }))
  }

  live("creates fifos and device nodes (as root) with their numbers", () =>
    Effect.gen(function*() {
      const root = yield* temp
      const [upper, target] = [`${root}/upper`, `${root}/target`]
      fs.mkdirSync(upper)
      fs.mkdirSync(target)
      execFileSync("mkfifo", [`${upper}/fifo`])
      execFileSync("mknod", [`${upper}/null`, "c", "1", "3"])
      execFileSync("mknod", [`${upper}/loop`, "b", "7", "200"])
      fs.utimesSync(upper, 1, 1)
      const differ = yield* Differ.Differ
      const layer = yield* differ.diffMounts([], [Mount.bind(upper, true)])
      yield* apply(layer, target)
      expect(manifest(target)).toEqual(manifest(upper))
      expect(fs.lstatSync(`${target}/null`).rdev).toBe(fs.lstatSync("/dev/null").rdev)
    }))

  live("an opaque marker clears what was there, not what this layer wrote", () =>
    Effect.gen(function*() {
      const target = yield* temp
      fs.mkdirSync(`${target}/d`)
      fs.writeFileSync(`${target}/d/old`, "old")
      fs.writeFileSync(`${target}/gone`, "gone")
      const tar = Buffer.concat([
        entry("d/", Tar.TypeFlag.directory),
        entry("d/early", Tar.TypeFlag.file, "early"),
        entry("d/.wh..wh..opq", Tar.TypeFlag.file),
        entry("d/new", Tar.TypeFlag.file, "new"),
        entry(".wh.gone", Tar.TypeFlag.file),
        Tar.endOfArchive()
      ])
      yield* apply(yield* store(tar, Oci.MediaType.layerTar), target)
      expect(fs.readdirSync(`${target}/d`).sort()).toEqual(["early", "new"])
      expect(fs.existsSync(`${target}/gone`)).toBe(false)
      // directories get their times last
      expect(fs.statSync(`${target}/d`).mtimeMs).toBe(1_000_000)
    }))

  live("returns the diffID, fails with WrongDiffId on a mismatch, and finds zstd by type or magic", () =>
    Effect.gen(function*() {
      const root = yield* temp
      const tar = Buffer.concat([entry("f", Tar.TypeFlag.file, "x"), Tar.endOfArchive()])
      const zstd = zstdCompress(tar)
      for (const [i, descriptor] of [
        yield* store(zstd, Oci.MediaType.layerZstd),
        yield* store(zstd, "application/octet-stream"),
        yield* store(tar, "application/octet-stream")
      ].entries()) {
        fs.mkdirSync(`${root}/${i}`)
        expect(yield* apply(descriptor, `${root}/${i}`, { expectedDiffId: Digest.Digest.make(sha256(tar)) })).toBe(
          sha256(tar)
        )
        expect(fs.readFileSync(`${root}/${i}/f`, "utf8")).toBe("x")
      }
      const wrong = yield* Effect.flip(
        apply(yield* store(tar, Oci.MediaType.layerTar), root, { expectedDiffId: Digest.emptySha256 })
      )
      expect(wrong._tag).toBe("WrongDiffId")
      expect(wrong._tag === "WrongDiffId" ? wrong.actual : "").toBe(sha256(tar))
    }))

  live("bad archives and mounts fail with ApplyFailed", () =>
    Effect.gen(function*() {
      const root = yield* temp
      const tar = Buffer.concat([entry("f", Tar.TypeFlag.file, "x".repeat(1000)), Tar.endOfArchive()])
      const corrupt = Buffer.from(tar)
      corrupt[10] = 0x41
      const cases = [
        yield* store(corrupt, Oci.MediaType.layerTar),
        yield* store(tar.subarray(0, 700), Oci.MediaType.layerTar),
        yield* store(tar, Oci.MediaType.layerGzip)
      ]
      for (const descriptor of cases) {
        const error = yield* Effect.flip(apply(descriptor, root))
        expect(error._tag).toBe("ApplyFailed")
      }
      const applier = yield* Applier.Applier
      const overlay = new Mount.Mount({ type: "overlay", source: "x", options: [] })
      const badMount = yield* Effect.flip(applier.apply(cases[0]!, [overlay]))
      expect(badMount._tag).toBe("ApplyFailed")
    }))
})
