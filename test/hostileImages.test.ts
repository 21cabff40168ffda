/**
 * The hostile corpus as whole images, the way a user meets them: `--base` from a docker archive
 * and from an OCI layout (native and overlay snapshotters), a base pulled from a real registry,
 * and `--layer` puts onto a base whose links lead out. Each ends in exit 0 or one line and exit 1,
 * the host as it was, and the same state directory still builds.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { escapes, type HostileCase, hostState, makeCanary, namedCases, type BeforeEntry } from "./support/hostileCorpus.js"
import { dir, file, pack, type RawEntry, symlink, tarOf } from "./support/rawTar.js"
import { type Running, startRegistry } from "./support/registry.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, haveTool, run } from "./support/tools.js"

const work = scratch("hostile-images")
const out = path.join(work.dir, "outside")
const fresh = work.fresh
beforeAll(() => makeCanary(out))
afterAll(() => work.remove())

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex")

const beforeLayer = (before: ReadonlyArray<BeforeEntry>): ReadonlyArray<RawEntry> =>
  before.map((e) => e.kind === "dir" ? dir(e.path) : e.kind === "file" ? file(e.path, e.content) : symlink(e.path, e.target))

/** The layers of a case as blobs: what its tree held before, then its hostile members. */
const layersOf = (c: HostileCase) => {
  const tars = [...(c.before === undefined || c.before.length === 0 ? [] : [tarOf(beforeLayer(c.before))]), tarOf(c.entries)]
  return tars.map((tar, i) => {
    const packing = i === tars.length - 1 ? c.packing : "gzip"
    return { blob: pack(tar, packing), diffId: `sha256:${sha(tar)}`, gzip: packing.startsWith("gzip") }
  })
}

const configOf = (diffIds: ReadonlyArray<string>) =>
  Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: diffIds } }))

/** An OCI layout holding the case as `latest`. */
const ociLayout = (c: HostileCase): string => {
  const layout = fresh("layout")
  const blobs = path.join(layout, "blobs", "sha256")
  fs.mkdirSync(blobs, { recursive: true })
  const put = (b: Buffer) => {
    const digest = sha(b)
    fs.writeFileSync(path.join(blobs, digest), b)
    return { digest: `sha256:${digest}`, size: b.length }
  }
  const layers = layersOf(c)
  const config = put(configOf(layers.map((l) => l.diffId)))
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map((l) => ({
      mediaType: l.gzip ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar",
      ...put(l.blob)
    }))
  }))
  const m = put(manifest)
  fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }))
  fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m, annotations: { "org.opencontainers.image.ref.name": "latest" } }]
  }))
  return layout
}

/** A docker archive (`docker save` form) holding the case. */
const dockerArchive = (c: HostileCase): string => {
  const staging = fresh("archive-dir")
  fs.mkdirSync(staging)
  const layers = layersOf(c)
  const names = layers.map((l, i) => {
    fs.writeFileSync(path.join(staging, `layer${i}.tar`), l.blob)
    return `layer${i}.tar`
  })
  const config = configOf(layers.map((l) => l.diffId))
  fs.writeFileSync(path.join(staging, `${sha(config)}.json`), config)
  fs.writeFileSync(path.join(staging, "manifest.json"), JSON.stringify([{ Config: `${sha(config)}.json`, RepoTags: ["hostile:latest"], Layers: names }]))
  const archive = `${fresh("archive")}.tar`
  run("tar", ["-cf", archive, "-C", staging, "."])
  return archive
}

const named = namedCases(out)
const pick = (name: string) => named.find((c) => c.name === name)!
const sample = [
  "BenignLayer", "SymlinkAbsolute", "SymlinkToCanaryThenWrite", "HardlinkSymlinkChmod", "HardlinkDirectAbsolute",
  "DirectoryOverrideSymlink", "WhiteoutThroughBaseSymlink", "PaxPathOverride", "NegativePaxSize", "HugePaxHeader",
  "InvalidUtf8Names", "TruncatedGzip"
].map(pick)

/** One CLI run against a hostile base: exit 0, or exit 1 and one line; the host untouched. */
const expectContained = async (args: ReadonlyArray<string>, state: string, c: HostileCase) => {
  // the host as it is now: anything else changing /etc meanwhile is not this run's doing
  const host = hostState(out)
  const result = await blobchain(args)
  const escaped = escapes(out, host, [state])
  expect(escaped, c.name).toBeUndefined()
  if (c.name === "BenignLayer") {
    expect(result.stderr, c.name).toBe("")
    expect(result.code, c.name).toBe(0)
  } else if (result.code !== 0) {
    expect(result.code, `${c.name}: ${result.stderr}`).toBe(1)
    expect(result.stderr.trim().split("\n"), c.name).toHaveLength(1)
  }
  return result
}

const appDir = () => {
  const app = fresh("app")
  write(app, "srv/app.js", "console.log('app')\n")
  return app
}

describe("hostile images through the CLI", () => {
  it.each([
    ["docker-archive", "native"],
    ["oci", "overlay"]
  ] as const)("--base %s on the %s snapshotter: contained, one line, and the state still builds", async (kind, snapshotter) => {
    const state = fresh("state")
    for (const c of sample) {
      const base = kind === "oci" ? `oci:${ociLayout(c)}:latest` : `docker-archive:${dockerArchive(c)}`
      await expectContained(["build", "--base", base, appDir(), "--snapshotter", snapshotter, "--state", state, "--out", fresh("out")], state, c)
    }
    const normal = await blobchain(["build", appDir(), "--snapshotter", snapshotter, "--state", state, "--out", fresh("out")])
    expect(normal.stderr).toBe("")
    expect(normal.code).toBe(0)
  })

  it("--layer onto a base whose links lead to the host writes inside the image", async () => {
    const state = fresh("state")
    const app = fresh("put")
    write(app, "secret", "from the put\n")
    write(app, "sub/keep", "from the put\n")
    for (const target of [out, `../../../../../../../..${out}`, `${out}/secret`]) {
      const c: HostileCase = { name: "BenignLayer", packing: "gzip", entries: [dir("srv"), symlink("srv/app", target)] }
      for (const snapshotter of ["native", "overlay"]) {
        await expectContained(
          ["build", "--base", `docker-archive:${dockerArchive(c)}`, "--layer", `${app}:/srv/app`, "--snapshotter", snapshotter, "--state", `${state}-${snapshotter}`, "--out", fresh("out")],
          `${state}-${snapshotter}`,
          c
        )
      }
    }
  })
})

const registryTools = haveTool("docker-registry") && haveTool("skopeo")
let registry: Running | undefined
beforeAll(async () => {
  if (registryTools) registry = await startRegistry()
})
afterAll(async () => {
  await registry?.stop()
})

describe("hostile images from a registry", () => {
  it("a pulled base is contained as a local one is", { skip: !registryTools }, async () => {
    const state = fresh("state")
    for (const [i, c] of ["BenignLayer", "SymlinkAbsolute", "HardlinkSymlinkChmod", "WhiteoutThroughBaseSymlink"].map(pick).entries()) {
      const ref = `docker://${registry!.host}/hostile/case${i}:1`
      run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${ociLayout(c)}:latest`, ref])
      await expectContained(["build", "--base", ref, appDir(), "--state", state, "--out", fresh("out")], state, c)
    }
    const normal = await blobchain(["build", appDir(), "--state", state, "--out", fresh("out")])
    expect(normal.code).toBe(0)
  })
})
