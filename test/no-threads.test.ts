/**
 * Where no worker thread can be started, the work meant for one is done on the main thread,
 * with the same results: the stored-block test, the fingerprints of a build, and zstd.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import { gzipChunkSize, parallelGzip } from "../src/archive/pgzip.js"
import { makeStoredThread } from "../src/archive/storedThread.js"
import { makeZstdThread } from "../src/archive/zstdThread.js"
import { Blobchain, Build } from "../src/index.js"
import { vi } from "vitest"
import { scratch, write } from "./support/scratch.js"

vi.mock("node:worker_threads", () => ({
  Worker: class {
    constructor() {
      throw new Error("no threads here")
    }
  }
}))

const work = scratch("no-threads")
afterAll(() => work.remove())

describe("without worker threads", () => {
  it.effect("parallel gzip still stores random chunks as they are", () =>
    Effect.gen(function*() {
      const random = crypto.randomBytes(3 * gzipChunkSize)
      const out: Array<Buffer> = []
      yield* Effect.promise(() =>
        pipeline(
          Readable.from([random]),
          parallelGzip({ level: 6, isIncompressible: makeStoredThread().isIncompressible }),
          new Writable({
            write(chunk: Buffer, _encoding, callback) {
              out.push(chunk)
              callback()
            }
          })
        )
      )
      const gz = Buffer.concat(out)
      expect(zlib.gunzipSync(gz).equals(random)).toBe(true)
      // stored blocks: 5 bytes per 64 KiB, the gzip header and trailer, nothing deflate would add
      expect(gz.length).toBe(random.length + 5 * 3 * Math.ceil(gzipChunkSize / 65_535) + 18)
    }))

  it.effect("a build prints its directories here, and makes the same snapshots", () =>
    Effect.gen(function*() {
      const one = work.fresh("one")
      const two = work.fresh("two")
      for (const dir of [one, two]) write(dir, "a/b", "same")
      write(two, "a/c", "new")
      const state = path.join(work.fresh("state"), "s")
      const built = yield* Build.build([one, two]).pipe(Effect.provide(Blobchain.layerLocal({ root: state })))
      expect(built.snapshots).toHaveLength(2)
      const again = yield* Build.build([one, two]).pipe(Effect.provide(Blobchain.layerLocal({ root: state })))
      expect(again.snapshots.map((s) => s.id)).toEqual(built.snapshots.map((s) => s.id))
      expect(again.snapshots.every((s) => s.reused)).toBe(true)
      expect(again.image.manifest.digest).toBe(built.image.manifest.digest)
      expect(fs.existsSync(state)).toBe(true)
    }))

  it.effect("zstd layers are compressed here, with the diffIDs any compression gives", () =>
    Effect.gen(function*() {
      expect(yield* Effect.promise(() => makeZstdThread().compressor(3, 1))).toBeUndefined()
      const one = work.fresh("z-one")
      write(one, "a/b", "x".repeat(100_000))
      write(one, "c", crypto.randomBytes(300_000).toString("base64"))
      const layersOf = (compression: "gzip" | "zstd") =>
        Build.build([one], { compression }).pipe(
          Effect.provide(Blobchain.layerLocal({ root: path.join(work.fresh("state"), "s") })),
          Effect.map((built) => built.image)
        )
      const zstd = yield* layersOf("zstd")
      const gzip = yield* layersOf("gzip")
      expect(zstd.layers[0]!.mediaType).toContain("zstd")
      expect(zstd.imageConfig.rootfs.diff_ids).toEqual(gzip.imageConfig.rootfs.diff_ids)
    }))
})
