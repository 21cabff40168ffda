/**
 * Building on a base of several layers with the overlay snapshotter: the base's layers are
 * applied one per overlay snapshot, and the image is the one the native snapshotter makes,
 * layer for layer, for bases of two and three layers with deletions, an opaque directory, a
 * directory deleted and made again, and hard links to a lower layer's file.
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { removeTree } from "../src/fs/remove.js"
import { file, tarOf } from "./support/rawTar.js"
import { layers } from "./support/overlayLayers.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, run } from "./support/tools.js"
import * as TarApplier from "../src/TarApplier.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const work = scratch("overlay-base")
afterAll(() => removeTree(work.dir))


/** A `docker save` archive of `tars` (oldest first) at a fresh path. */
const dockerArchive = (tars: ReadonlyArray<Buffer>): string => {
  const config = Buffer.from(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: tars.map((t) => Digest.ofBytes(t)) }
  }))
  const names = tars.map((_, i) => `layer${i}/layer.tar`)
  const manifest = Buffer.from(JSON.stringify([{ Config: "config.json", RepoTags: ["base:latest"], Layers: names }]))
  const path = `${work.fresh("base")}.tar`
  fs.writeFileSync(path, tarOf([
    ...tars.map((body, i) => ({ ...file(names[i]!), body })),
    { ...file("config.json"), body: config },
    { ...file("manifest.json"), body: manifest }
  ]))
  return path
}

/** The tree the first `count` layers make applied onto one directory, plus an application. */
const sourceOn = (count: number) =>
  Effect.gen(function*() {
    const tree = work.fresh("source")
    fs.mkdirSync(tree)
    const applier = yield* Applier.Applier
    for (const [i, entries] of layers.slice(0, count).entries()) {
      const info = yield* ContentStore.writeBlob(`layer-${count}-${i}`, tarOf(entries))
      yield* applier.apply(new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size }), [
        Mount.bind(tree, false)
      ])
    }
    write(tree, "srv/app/main.js", "console.log('app')\n")
    fs.rmSync(NodePath.join(tree, "etc", "passwd"))
    return tree
  }).pipe(Effect.provide(TarApplier.layer.pipe(Layer.provideMerge(MemoryContentStore.layer))))

/** The image's layers (diffID and blob), and the names in its top layer. */
const build = async (snapshotter: string, base: string, source: string) => {
  const out = work.fresh(`out-${snapshotter}`)
  const result = await blobchain([
    "build", "--snapshotter", snapshotter, "--base", `docker-archive:${base}`, source,
    "--state", work.fresh(`state-${snapshotter}`), "--out", out, "--json"
  ])
  expect(result.stderr).toBe("")
  expect(result.code).toBe(0)
  const layers: ReadonlyArray<{ readonly diffId: string; readonly blob: string }> = JSON.parse(result.stdout).layers
  const top = NodePath.join(out, "blobs", "sha256", layers[layers.length - 1]!.blob.replace("sha256:", ""))
  return { layers: layers.map((l) => `${l.diffId} ${l.blob}`), top: run("tar", ["-tzf", top]).split("\n").filter((n) => n !== "") }
}

describe("building on a base of several layers", () => {
  for (const count of [2, 3]) {
    it.live(`a base of ${count} layers makes the same image with the overlay snapshotter as with the native one`, () =>
      Effect.gen(function*() {
        const tars = layers.slice(0, count).map((entries) => tarOf(entries))
        const base = dockerArchive(tars)
        const source = yield* sourceOn(count)
        const [native, overlay] = yield* Effect.promise(() =>
          Promise.all([build("native", base, source), build("overlay", base, source)])
        )
        expect(native.layers).toHaveLength(count + 1)
        expect(native.layers.slice(0, count).map((l) => l.split(" ")[0])).toEqual(tars.map((t) => Digest.ofBytes(t)))
        expect(overlay.layers).toEqual(native.layers)
        // the top layer holds the application and the deletion, and nothing the base hides
        expect(native.top).toContain("srv/app/main.js")
        expect(native.top).toContain("etc/.wh.passwd")
        expect(native.top.filter((n) => /\.wh\.|opt\/x|d\/1|var\/cache\/a/.test(n))).toEqual(["etc/.wh.passwd"])
      }))
  }
})
