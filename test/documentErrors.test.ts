/**
 * Malformed image documents (index.json, manifests, configs, a docker archive's manifest.json,
 * missing blobs) fail with one line naming the document or digest and its first problem.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { errorLine } from "../src/cli/output.js"
import { firstProblem } from "../src/image/document.js"
import { Oci } from "../src/index.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, run } from "./support/tools.js"

const work = scratch("document-errors")
afterAll(() => work.remove())
const fresh = work.fresh

const hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"))
const blobFile = (layout: string, digest: string) => path.join(layout, "blobs", "sha256", digest.replace("sha256:", ""))

let layout = ""
let archive = ""
beforeAll(async () => {
  const tree = fresh("tree")
  write(tree, "etc/hello", "hello\n")
  layout = fresh("layout")
  archive = `${fresh("archive")}.tar`
  const state = fresh("state")
  expect((await blobchain(["build", tree, "--state", state, "--out", layout])).code).toBe(0)
  expect((await blobchain(["build", tree, "--state", state, "--out", archive, "--format", "docker"])).code).toBe(0)
})

/** A copy of the layout with its manifest and config passed through `edit` and stored under their new digests. */
const editedLayout = (edit: { readonly manifest?: (m: any) => unknown; readonly config?: (c: any) => unknown }) => {
  const dir = fresh("edited")
  fs.cpSync(layout, dir, { recursive: true })
  const put = (value: unknown) => {
    const bytes = Buffer.from(JSON.stringify(value))
    fs.writeFileSync(path.join(dir, "blobs", "sha256", hex(bytes)), bytes)
    return { digest: `sha256:${hex(bytes)}`, size: bytes.length }
  }
  const index = readJson(path.join(dir, "index.json"))
  const manifest = readJson(blobFile(dir, index.manifests[0].digest))
  const config = readJson(blobFile(dir, manifest.config.digest))
  const newConfig = edit.config === undefined ? manifest.config : { ...manifest.config, ...put(edit.config(config)) }
  const newManifest = put((edit.manifest ?? ((m) => m))({ ...manifest, config: newConfig }))
  index.manifests[0] = { ...index.manifests[0], ...newManifest }
  fs.writeFileSync(path.join(dir, "index.json"), JSON.stringify(index))
  return { dir, manifest: newManifest.digest, config: newConfig.digest as string, layers: manifest.layers as Array<{ digest: string }> }
}

/** A copy of the docker archive with `file` (its name inside, or the config when "config") replaced by `content`. */
const editedArchive = (file: string, content: (old: any) => string) => {
  const dir = fresh("unpacked")
  fs.mkdirSync(dir)
  run("tar", ["-xf", archive, "-C", dir])
  const manifest = readJson(path.join(dir, "manifest.json"))
  if (file === "config") {
    const bytes = Buffer.from(content(readJson(path.join(dir, manifest[0].Config))))
    fs.rmSync(path.join(dir, manifest[0].Config))
    manifest[0].Config = `blobs/sha256/${hex(bytes)}`
    fs.writeFileSync(path.join(dir, manifest[0].Config), bytes)
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest))
  } else {
    fs.writeFileSync(path.join(dir, file), content(readJson(path.join(dir, file))))
  }
  const out = `${fresh("archive")}.tar`
  run("tar", ["-cf", out, "-C", dir, "."])
  return out
}

/** The one line a failed command printed: exit code 1, one non-empty stderr line, no parse tree. */
const oneLine = async (args: ReadonlyArray<string>) => {
  const result = await blobchain(args)
  const lines = result.stderr.split("\n").filter((l) => l.trim() !== "")
  expect(lines, result.stderr).toHaveLength(1)
  expect(result.code).toBe(1)
  expect(lines[0]).toMatch(/^blobchain: /)
  expect(lines[0]).not.toMatch(/[└├│]|<->/)
  return lines[0]!
}
const build = (base: string) => oneLine(["build", "--base", base, "--state", fresh("state"), "--out", fresh("out")])

describe("malformed image documents", () => {
  it("a bad digest in index.json: the layout, index.json, the entry and the digest", async () => {
    const dir = fresh("layout")
    fs.cpSync(layout, dir, { recursive: true })
    const index = readJson(path.join(dir, "index.json"))
    index.manifests[0].digest = "sha256:zz"
    fs.writeFileSync(path.join(dir, "index.json"), JSON.stringify(index))
    const expected = `invalid image ${dir}: index.json: manifests[0].digest: invalid sha256 digest "sha256:zz" (expected 64 lowercase hex digits)`
    expect(await build(`oci:${dir}`)).toBe(`blobchain: ${expected}`)
    expect(await oneLine(["inspect", dir])).toBe(`blobchain: ${expected}`)
  })

  it("an index.json that is not JSON", async () => {
    const dir = fresh("layout")
    fs.cpSync(layout, dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "index.json"), "{nope")
    const line = await build(`oci:${dir}`)
    expect(line).toContain(`${dir}: index.json: `)
    expect(line).toMatch(/JSON/)
  })

  it("a manifest without layers: its digest and the missing key", async () => {
    const { dir, manifest } = editedLayout({ manifest: ({ layers: _, ...rest }) => rest })
    expect(await build(`oci:${dir}`)).toBe(`blobchain: invalid image ${dir}: manifest ${manifest}: layers: is missing`)
    expect(await oneLine(["inspect", dir])).toBe(`blobchain: invalid image ${dir}: manifest ${manifest}: layers: is missing`)
  })

  it("a config whose diff_ids entry is not a digest: its digest and the entry", async () => {
    const { config, dir } = editedLayout({ config: (c) => ({ ...c, rootfs: { ...c.rootfs, diff_ids: ["nope"] } }) })
    const expected = `blobchain: invalid image ${dir}: config ${config}: rootfs.diff_ids[0]: not a digest: "nope" (expected <algorithm>:<hex>)`
    expect(await build(`oci:${dir}`)).toBe(expected)
    expect(await oneLine(["inspect", dir])).toBe(expected)
  })

  it("a docker archive's invalid manifest.json: the archive, manifest.json and the entry", async () => {
    const bad = editedArchive("manifest.json", () => JSON.stringify([{ Config: 1, Layers: [] }]))
    const expected = `blobchain: invalid image ${bad}: manifest.json: [0].Config: Expected string, actual 1`
    expect(await build(`docker-archive:${bad}`)).toBe(expected)
    expect(await oneLine(["inspect", bad])).toBe(expected)
    const notJson = editedArchive("manifest.json", () => "[{")
    expect(await build(`docker-archive:${notJson}`)).toContain(`${notJson}: manifest.json: `)
  })

  it("a docker archive's config whose diff_ids entry is not a digest", async () => {
    const bad = editedArchive("config", (c) => JSON.stringify({ ...c, rootfs: { ...c.rootfs, diff_ids: ["sha256:zz"] } }))
    const line = await build(`docker-archive:${bad}`)
    expect(line.startsWith(`blobchain: invalid image ${bad}: config `)).toBe(true)
    expect(line).toMatch(/: config \S+\.json|: config blobs\/sha256\/[0-9a-f]{64}: /)
    expect(line.endsWith(`: rootfs.diff_ids[0]: invalid sha256 digest "sha256:zz" (expected 64 lowercase hex digits)`)).toBe(true)
  })

  it("a blob missing from the layout: its name", async () => {
    const { dir, layers } = editedLayout({})
    const layer = layers[0]!.digest
    fs.rmSync(blobFile(dir, layer))
    expect(await build(`oci:${dir}`)).toBe(`blobchain: invalid image ${dir}: blob blobs/sha256/${layer.slice(7)} is missing`)
    expect(await oneLine(["inspect", dir])).toContain(layer.slice(7))
  })
})

describe("one line for an error", () => {
  const treeOf = (text: string) => {
    const result = Schema.decodeUnknownEither(Schema.parseJson(Oci.Index))(text)
    if (Either.isRight(result)) throw new Error("decoded")
    return result.left
  }
  const badDigest = JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "x", digest: "sha256:zz", size: 1 }] })

  it("a decode failure's first problem with its path", () => {
    expect(firstProblem(treeOf(badDigest))).toBe(`manifests[0].digest: invalid sha256 digest "sha256:zz" (expected 64 lowercase hex digits)`)
    expect(firstProblem(treeOf("{"))).toMatch(/JSON/)
  })

  it("a message that carries a whole parse tree becomes its head, the path and the first problem", () => {
    const message = `invalid image /x/layout: index.json: ${treeOf(badDigest).message}`
    expect(message.split("\n").length).toBeGreaterThan(5)
    expect(errorLine(message)).toBe(
      `invalid image /x/layout: index.json: manifests[0].digest: invalid sha256 digest "sha256:zz" (expected 64 lowercase hex digits)`
    )
  })

  it("any other message is cut at its first line", () => {
    expect(errorLine("boom\n    at f (file.js:1:1)\n    at g (file.js:2:2)")).toBe("boom")
    expect(errorLine("\n\nsecond try\nmore")).toBe("second try")
    expect(errorLine("")).toBe("failed")
  })
})
