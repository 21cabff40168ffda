/**
 * A base's diff_ids are checked against its layers whatever the state directory holds: a
 * layer imported before answers with the diffID found when it was applied, never the claim.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Base, BlobMapper, Blobchain, ContentStore, Digest, Image, Oci } from "../src/index.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, run } from "./support/tools.js"

const work = scratch("base-diffid")
afterAll(() => work.remove())
const fresh = work.fresh

const zero = `sha256:${"0".repeat(64)}`
const hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"))
const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "")

/** A one-layer tree built by blobchain into `--format` oci or docker: its true diffID and layer blob. */
const built = async (format: "oci" | "docker") => {
  const tree = fresh("tree")
  write(tree, "etc/hello", "hello\n")
  write(tree, "bin/run", "#!/bin/sh\necho run\n", 0o755)
  const out = format === "docker" ? `${fresh("good")}.tar` : fresh("good")
  const result = await blobchain(["build", tree, "--state", fresh("state"), "--out", out, "--format", format, "--json"])
  expect(result.code).toBe(0)
  const layer = JSON.parse(result.stdout).layers[0]
  return { out, diffId: layer.diffId as string, blob: layer.blob as string }
}

/** A copy of the docker archive `archive` whose config claims `diffIds`, stored under the config's new digest. */
const archiveClaiming = (archive: string, diffIds: ReadonlyArray<string>) => {
  const dir = fresh("unpacked")
  fs.mkdirSync(dir)
  run("tar", ["-xf", archive, "-C", dir])
  const manifest = readJson(path.join(dir, "manifest.json"))
  const config = readJson(path.join(dir, manifest[0].Config))
  fs.rmSync(path.join(dir, manifest[0].Config))
  const bytes = Buffer.from(JSON.stringify({ ...config, rootfs: { ...config.rootfs, diff_ids: diffIds } }))
  manifest[0].Config = `blobs/sha256/${hex(bytes)}`
  fs.writeFileSync(path.join(dir, manifest[0].Config), bytes)
  fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest))
  const out = `${fresh("bad")}.tar`
  run("tar", ["-cf", out, "-C", dir, "."])
  return out
}

/** A copy of the OCI layout `layout` whose config claims `diffIds`: new config, manifest and index. */
const layoutClaiming = (layout: string, diffIds: ReadonlyArray<string>) => {
  const dir = fresh("bad-layout")
  fs.cpSync(layout, dir, { recursive: true })
  const blobFile = (digest: string) => path.join(dir, "blobs", "sha256", digest.replace("sha256:", ""))
  const put = (value: unknown) => {
    const bytes = Buffer.from(JSON.stringify(value))
    fs.writeFileSync(path.join(dir, "blobs", "sha256", hex(bytes)), bytes)
    return { digest: `sha256:${hex(bytes)}`, size: bytes.length }
  }
  const index = readJson(path.join(dir, "index.json"))
  const manifest = readJson(blobFile(index.manifests[0].digest))
  const config = readJson(blobFile(manifest.config.digest))
  const newConfig = put({ ...config, rootfs: { ...config.rootfs, diff_ids: diffIds } })
  const newManifest = put({ ...manifest, config: { ...manifest.config, ...newConfig } })
  index.manifests[0] = { ...index.manifests[0], ...newManifest }
  fs.writeFileSync(path.join(dir, "index.json"), JSON.stringify(index))
  return dir
}

/** The diff_ids of the image in the OCI layout `out`. */
const diffIdsOf = (out: string) => {
  const blobFile = (digest: string) => path.join(out, "blobs", "sha256", digest.replace("sha256:", ""))
  const index = readJson(path.join(out, "index.json"))
  const manifest = readJson(blobFile(index.manifests[0].digest))
  return readJson(blobFile(manifest.config.digest)).rootfs.diff_ids
}

describe("a base's diffIDs against a state that has its layers", () => {
  it("a docker archive claiming a wrong diffID for a layer imported before is WrongDiffId, and the state is unharmed", async () => {
    const good = await built("docker")
    const bad = archiveClaiming(good.out, [zero])

    const first = await blobchain(["build", "--base", `docker-archive:${bad}`, "--state", fresh("state"), "--out", fresh("out")])
    expect(first.code).toBe(1)
    expect(lines(first.stderr)).toHaveLength(1)
    expect(first.stderr).toContain(good.blob)

    const state = fresh("state")
    const imported = await blobchain(["build", "--base", `docker-archive:${good.out}`, "--state", state, "--out", fresh("out")])
    expect(imported.stderr).toBe("")
    expect(imported.code).toBe(0)

    const out = fresh("out")
    const refused = await blobchain(["build", "--base", `docker-archive:${bad}`, "--state", state, "--out", out])
    expect(refused.code).toBe(1)
    expect(lines(refused.stderr)).toHaveLength(1)
    expect(refused.stderr).toMatch(/^blobchain: layer sha256:[0-9a-f]{64}: diffID sha256:[0-9a-f]{64} does not match expected sha256:0{64}\n$/)
    expect(refused.stderr).toContain(good.blob)
    expect(refused.stderr).toContain(good.diffId)
    expect(fs.existsSync(out)).toBe(false)

    // nothing of the claim was recorded: the good base still builds with its true diffID, from the same snapshot
    const again = fresh("out")
    const rebuilt = await blobchain(["build", "--base", `docker-archive:${good.out}`, "--state", state, "--out", again, "--json"])
    expect(rebuilt.stderr).toBe("")
    expect(rebuilt.code).toBe(0)
    expect(JSON.parse(rebuilt.stdout).base.map((b: { reused: boolean }) => b.reused)).toEqual([true])
    expect(diffIdsOf(again)).toEqual([good.diffId])
  })

  it("an OCI layout claiming a wrong diffID for a layer imported before is WrongDiffId", async () => {
    const good = await built("oci")
    const bad = layoutClaiming(good.out, [zero])
    const state = fresh("state")
    expect((await blobchain(["build", "--base", `oci:${good.out}`, "--state", state, "--out", fresh("out")])).code).toBe(0)
    const refused = await blobchain(["build", "--base", `oci:${bad}`, "--state", state, "--out", fresh("out")])
    expect(refused.code).toBe(1)
    expect(lines(refused.stderr)).toHaveLength(1)
    expect(refused.stderr).toContain(`layer ${good.blob}: diffID ${good.diffId} does not match expected ${zero}`)
    // the same layer blob in a docker archive (written by blobchain from the layout) meets the same check
    const archive = `${fresh("archive")}.tar`
    expect((await blobchain(["build", "--base", `oci:${good.out}`, "--state", fresh("state"), "--out", archive, "--format", "docker"])).code)
      .toBe(0)
    const viaArchive = await blobchain(["build", "--base", `docker-archive:${archiveClaiming(archive, [zero])}`, "--state", state, "--out", fresh("out")])
    expect(viaArchive.code).toBe(1)
    expect(viaArchive.stderr).toContain(`layer ${good.blob}: diffID ${good.diffId} does not match expected ${zero}`)
  })

  it.scoped("a layer whose snapshot exists but whose diffID nothing recorded is applied again to check the claim", () =>
    Effect.gen(function*() {
      const good = yield* Effect.promise(() => built("oci"))
      const context = yield* Layer.build(Blobchain.layerLocal({ root: fresh("state") }))
      const store = ContentStore.ContentStore.pipe(Effect.provide(context))
      const mapper = BlobMapper.BlobMapper.pipe(Effect.provide(context))
      const loaded = yield* Image.load(good.out).pipe(Effect.provide(context))
      const [layer] = yield* Base.importBase({ source: good.out, layers: loaded.layers, imageConfig: loaded.imageConfig }).pipe(
        Effect.provide(context)
      )
      // the label and the mapping gone (a state written before either was kept)
      yield* Effect.flatMap(store, (s) => s.update(layer!.layer.digest, { [Oci.LabelUncompressed]: "" }))
      yield* Effect.flatMap(mapper, (m) => m.delete(layer!.id))

      const wrong = Digest.ofBytes("not the diffID")
      const claim = { ...loaded.imageConfig, rootfs: { type: "layers" as const, diff_ids: [wrong] } }
      const error = yield* Effect.flip(
        Base.importBase({ source: good.out, layers: loaded.layers, imageConfig: claim }).pipe(Effect.provide(context))
      )
      expect(error).toMatchObject({ _tag: "WrongDiffId", layer: good.blob, expected: wrong, actual: good.diffId })
      const info = yield* Effect.flatMap(store, (s) => s.info(layer!.layer.digest))
      expect(info.labels[Oci.LabelUncompressed]).toBeUndefined()
      expect(yield* Effect.flatMap(mapper, (m) => m.get(layer!.id))).toEqual(Option.none())

      // the true claim is checked the same way, then labelled and mapped as found
      const again = yield* Base.importBase({ source: good.out, layers: loaded.layers, imageConfig: loaded.imageConfig }).pipe(
        Effect.provide(context)
      )
      expect(again.map((l) => l.id)).toEqual([layer!.id])
      const relabelled = yield* Effect.flatMap(store, (s) => s.info(layer!.layer.digest))
      expect(relabelled.labels[Oci.LabelUncompressed]).toBe(good.diffId)
      const mapped = yield* Effect.flatMap(mapper, (m) => m.get(layer!.id))
      expect(Option.map(mapped, (p) => p.diffId)).toEqual(Option.some(good.diffId))
    }))
})
