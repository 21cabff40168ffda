/**
 * Hostile layers: each tries to reach outside the root (`..`, absolute names, symlinks and
 * hard links out, directory→symlink swaps, escaping whiteouts, long-name tricks) and must be
 * refused with UnsafePath while nothing outside the root changes.
 */
import * as fs from "node:fs"
import * as zlib from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { hostileLayers } from "./support/hostileLayers.js"
import { file, tarOf } from "./support/rawTar.js"
import { manifest, tempDir } from "./support/trees.js"
import * as TarApplier from "../src/TarApplier.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = TarApplier.layer.pipe(Layer.provideMerge(MemoryContentStore.layer))

const applyHostile = (gzip: boolean) =>
  Effect.gen(function*() {
    const tmp = yield* Effect.acquireRelease(Effect.sync(() => tempDir("hostile")), (t) => Effect.sync(t.remove))
    const root = `${tmp.dir}/root`
    const outside = `${tmp.dir}/outside`
    fs.mkdirSync(root)
    fs.mkdirSync(`${outside}/sub`, { recursive: true })
    fs.writeFileSync(`${outside}/secret`, "secret")
    const before = { outside: manifest(outside), siblings: fs.readdirSync(tmp.dir).sort() }
    const layers = hostileLayers(outside)
    return { tmp, root, outside, before, layers, gzip }
  })

describe("hostile layers", () => {
  it("has at least 30 of them", () => {
    expect(hostileLayers("/x").length).toBeGreaterThanOrEqual(30)
  })

  for (const [index, [title]] of hostileLayers("/x").entries()) {
    it.scopedLive(`refuses: ${title}`, () =>
      Effect.gen(function*() {
        const { before, layers, outside, root, tmp } = yield* applyHostile(false)
        const [, entries] = layers[index]!
        // every other one gzipped under a media type that says nothing: found by its magic bytes
        const gzip = index % 2 === 1
        const bytes = gzip ? zlib.gzipSync(tarOf(entries)) : tarOf(entries)
        const info = yield* ContentStore.writeBlob(`hostile-${index}`, bytes)
        const descriptor = new Oci.Descriptor({
          mediaType: gzip ? "application/octet-stream" : Oci.MediaType.layerTar,
          digest: info.digest,
          size: info.size
        })
        const applier = yield* Applier.Applier
        const error = yield* Effect.flip(applier.apply(descriptor, [Mount.bind(root, false)]))
        expect(error._tag).toBe("UnsafePath")
        expect(manifest(outside)).toEqual(before.outside)
        expect(fs.readFileSync(`${outside}/secret`, "utf8")).toBe("secret")
        expect(fs.readdirSync(tmp.dir).sort()).toEqual(before.siblings)
        expect(fs.existsSync("/tmp/blobchain-hostile-evil")).toBe(false)
      }).pipe(Effect.provide(services)))
  }

  it.scopedLive("an over-long name component is refused with ApplyFailed naming the entry", () =>
    Effect.gen(function*() {
      const { before, outside, root } = yield* applyHostile(false)
      const name = `ok/${"w".repeat(300)}`
      const info = yield* ContentStore.writeBlob("long", tarOf([file(name)]))
      const applier = yield* Applier.Applier
      const error = yield* Effect.flip(
        applier.apply(new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size }), [
          Mount.bind(root, false)
        ])
      )
      expect(error._tag).toBe("ApplyFailed")
      expect(error._tag === "ApplyFailed" ? error.entry : undefined).toBe(name)
      expect(manifest(outside)).toEqual(before.outside)
    }).pipe(Effect.provide(services)))
})
