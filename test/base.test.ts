import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Base, Blobchain, ContentStore, Digest, Image, Snapshotter } from "../src/index.js"
import { manifest } from "./support/trees.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, haveTool, run } from "./support/tools.js"

const umoci = haveTool("umoci")

const work = scratch("base")
afterAll(() => work.remove())
const fresh = work.fresh

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"))
const blob = (layout: string, digest: string) => path.join(layout, "blobs", "sha256", digest.replace("sha256:", ""))
const manifestOf = (layout: string, tag: string) => {
  const index = readJson(path.join(layout, "index.json"))
  const entry = index.manifests.find((m: { annotations?: Record<string, string> }) =>
    m.annotations?.["org.opencontainers.image.ref.name"] === tag)
  return readJson(blob(layout, entry.digest))
}

/** An image made by umoci: two layers, Env and Cmd set, tagged `base`. */
const umociBase = () => {
  const layout = fresh("umoci")
  const bundle = fresh("bundle")
  run("umoci", ["init", "--layout", layout])
  run("umoci", ["new", "--image", `${layout}:base`])
  run("umoci", ["config", "--image", `${layout}:base`, "--config.env", "FROM_BASE=yes", "--config.cmd", "/bin/base-cmd"])
  run("umoci", ["unpack", "--image", `${layout}:base`, bundle])
  const rootfs = path.join(bundle, "rootfs")
  write(rootfs, "etc/os-release", "NAME=base\n")
  write(rootfs, "bin/base-cmd", "#!/bin/sh\necho base\n", 0o755)
  run("umoci", ["repack", "--refresh-bundle", "--image", `${layout}:base`, bundle])
  write(rootfs, "usr/lib/libbase.so", "x".repeat(3000))
  fs.rmSync(path.join(rootfs, "etc/os-release"))
  write(rootfs, "etc/os-release", "NAME=base\nVERSION=2\n")
  run("umoci", ["repack", "--refresh-bundle", "--image", `${layout}:base`, bundle])
  return { layout, rootfs }
}

/** A full tree: the base's root filesystem plus an app. */
const appOn = (rootfs: string) => {
  const dir = fresh("app")
  run("cp", ["-a", `${rootfs}/.`, dir])
  write(dir, "srv/app/main.js", "console.log('app')\n")
  return dir
}

describe("building on a base image", () => {
  it("an oci: base's layers come first, byte for byte, and its config is inherited", { skip: !umoci }, async () => {
    const { layout, rootfs } = umociBase()
    const app = appOn(rootfs)
    const state = fresh("state")
    const out = fresh("out")
    const result = await blobchain([
      "build", "--base", `oci:${layout}:base`, app, "--state", state, "--out", out, "--tag", "app", "--env", "APP=1", "--json"
    ])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    const built = JSON.parse(result.stdout)
    const baseLayers = manifestOf(layout, "base").layers.map((l: { digest: string }) => l.digest)
    expect(baseLayers).toHaveLength(2)
    const ours = manifestOf(out, "app")
    expect(ours.layers.map((l: { digest: string }) => l.digest).slice(0, 2)).toEqual(baseLayers)
    expect(ours.layers).toHaveLength(3)
    expect(built.base.map((b: { reused: boolean }) => b.reused)).toEqual([false, false])
    const config = readJson(blob(out, ours.config.digest))
    const baseConfig = readJson(blob(layout, manifestOf(layout, "base").config.digest))
    expect(config.rootfs.diff_ids.slice(0, 2)).toEqual(baseConfig.rootfs.diff_ids)
    expect(config.config.Env).toEqual([...baseConfig.config.Env, "APP=1"])
    expect(config.config.Cmd).toEqual(["/bin/base-cmd"])
    expect(config.history).toHaveLength(baseConfig.history.length + 1)
    const bundle = fresh("unpacked")
    run("umoci", ["unpack", "--image", `${out}:app`, bundle])
    expect(manifest(path.join(bundle, "rootfs"))).toEqual(manifest(app))

    // the same base again: nothing imported, every snapshot reused
    const again = await blobchain(["build", "--base", `oci:${layout}:base`, app, "--state", state, "--out", fresh("out"), "--env", "APP=1", "--json"])
    expect(again.code).toBe(0)
    const second = JSON.parse(again.stdout)
    expect(second.base.map((b: { reused: boolean }) => b.reused)).toEqual([true, true])
    expect(second.snapshots.map((s: { reused: boolean }) => s.reused)).toEqual([true])
    expect(second.manifest.digest).toBe(built.manifest.digest)
  })

  it("--layer SRC:DEST puts a directory on top of a docker-archive base", { skip: !umoci }, async () => {
    const { layout } = umociBase()
    const state = fresh("state")
    // a docker archive of the umoci image, written by blobchain itself from that base
    const archive = `${fresh("archive")}.tar`
    expect((await blobchain(["build", "--base", `oci:${layout}:base`, "--state", state, "--out", archive, "--format", "docker"])).code).toBe(0)
    const src = fresh("src")
    write(src, "index.html", "<h1>hi</h1>\n")
    write(src, "assets/app.css", "body{}\n")
    const out = fresh("out")
    const result = await blobchain(["build", "--base", `docker-archive:${archive}`, "--layer", `${src}:/srv/www`, "--state", fresh("state"), "--out", out])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    const ours = manifestOf(out, "latest")
    expect(ours.layers.map((l: { digest: string }) => l.digest).slice(0, 2))
      .toEqual(manifestOf(layout, "base").layers.map((l: { digest: string }) => l.digest))
    const bundle = fresh("unpacked")
    run("umoci", ["unpack", "--image", `${out}:latest`, bundle])
    // what the base unpacks to, as umoci sees it, plus the put directory
    const baseBundle = fresh("base-unpacked")
    run("umoci", ["unpack", "--image", `${layout}:base`, baseBundle])
    const expected = path.join(baseBundle, "rootfs")
    fs.mkdirSync(path.join(expected, "srv"), { recursive: true })
    run("cp", ["-a", `${src}/.`, path.join(expected, "srv/www")])
    const strip = (lines: Array<string>) => lines.filter((l) => !/^srv(\/www)? /.test(l))
    expect(strip(manifest(path.join(bundle, "rootfs")))).toEqual(strip(manifest(expected)))
    expect(fs.readFileSync(path.join(bundle, "rootfs/srv/www/assets/app.css"), "utf8")).toBe("body{}\n")
  })

  it("a tampered base layer is refused and nothing of it is committed", { skip: !umoci }, async () => {
    const { layout, rootfs } = umociBase()
    const layer = manifestOf(layout, "base").layers[1].digest
    const file = blob(layout, layer)
    const bytes = fs.readFileSync(file)
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] ?? 0) ^ 0xff
    fs.rmSync(file)
    fs.writeFileSync(file, bytes)
    const state = fresh("state")
    const result = await blobchain(["build", "--base", `oci:${layout}:base`, appOn(rootfs), "--state", state, "--out", fresh("out")])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/hashes to sha256:/)
    expect(result.stderr.trim().split("\n")).toHaveLength(1)
    expect(fs.existsSync(path.join(state, "content", "blobs", "sha256", layer.replace("sha256:", "")))).toBe(false)
    expect(fs.readdirSync(path.join(state, "content", "ingest"))).toEqual([])
  })

  it.scoped("a layer whose diffID is not the config's is WrongDiffId naming it, and no snapshot is left", () =>
    Effect.gen(function*() {
      if (!umoci) return
      const { layout } = umociBase()
      const root = fresh("state")
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const loaded = yield* Image.load(layout, { tag: "base" }).pipe(Effect.provide(context))
      const wrong = Digest.ofBytes("not the diffID")
      const base: Base.BaseImage = {
        source: layout,
        layers: loaded.layers,
        imageConfig: { ...loaded.imageConfig, rootfs: { type: "layers", diff_ids: [loaded.imageConfig.rootfs.diff_ids[0]!, wrong] } }
      }
      const error = yield* Effect.flip(Base.importBase(base).pipe(Effect.provide(context)))
      expect(error).toMatchObject({ _tag: "WrongDiffId", layer: loaded.layers[1]!.digest, expected: wrong })
      const snapshots = yield* Effect.flatMap(Snapshotter.Snapshotter, (s) => s.walk).pipe(Effect.provide(context))
      expect(snapshots.map((s) => s.kind)).toEqual(["committed"])
      expect(yield* Effect.flatMap(ContentStore.ContentStore, (s) => s.statuses).pipe(Effect.provide(context))).toEqual([])
    }))

  it("several processes importing the same base into one state directory all succeed", { skip: !umoci }, async () => {
    const { layout, rootfs } = umociBase()
    const app = appOn(rootfs)
    const state = fresh("state")
    const bin = path.resolve(import.meta.dirname, "../bin/blobchain.js")
    const once = () =>
      new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, "build", "--base", `oci:${layout}:base`, app, "--state", state, "--out", fresh("out"), "--json"])
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d) => void (stdout += d))
        child.stderr.on("data", (d) => void (stderr += d))
        child.on("close", (code) => resolve({ code, stderr, stdout }))
      })
    const results = await Promise.all([once(), once(), once()])
    for (const result of results) {
      expect(result.stderr).toBe("")
      expect(result.code).toBe(0)
    }
    expect(new Set(results.map((r) => JSON.parse(r.stdout).manifest.digest)).size).toBe(1)
    expect(fs.readdirSync(path.join(state, "content", "ingest"))).toEqual([])
  })

  it("bad base sources are usage errors naming them", async () => {
    const bad = await blobchain(["build", "--base", "ftp://nowhere", "--state", fresh("state")])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/unknown image source "ftp:\/\/nowhere"/)
    const missing = await blobchain(["build", "--base", `oci:${fresh("nothing")}`, "--state", fresh("state")])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/nothing/)
    expect((await blobchain(["build", "--layer", "nocolon", "--state", fresh("state")])).code).toBe(2)
    expect((await blobchain(["build", "--platform", "linux", "--base", "oci:x", "--state", fresh("state")])).code).toBe(2)
  })
})
