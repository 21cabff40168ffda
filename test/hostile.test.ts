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
import * as Tar from "../src/diff/tar.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { manifest, tempDir } from "./support/trees.js"

const services = Applier.layerDefault.pipe(Layer.provideMerge(ContentStore.layerMemory))

interface E {
  readonly name: string
  readonly type?: string
  readonly content?: string
  readonly linkname?: string
}

const header = (e: E, size: number): Tar.Header => ({
  name: e.name,
  type: e.type ?? Tar.TypeFlag.file,
  mode: e.type === Tar.TypeFlag.directory ? 0o755 : 0o644,
  uid: 0,
  gid: 0,
  size,
  mtime: 1_600_000_000,
  ...(e.linkname === undefined ? {} : { linkname: e.linkname })
})

/** A tar of `entries`; a `type: "L"` entry is a GNU long name for the next one. */
const tarOf = (entries: ReadonlyArray<E>): Buffer => {
  const parts: Array<Buffer> = []
  for (const e of entries) {
    const body = Buffer.from(e.type === "L" ? `${e.content ?? ""}\0` : (e.content ?? ""))
    const h = e.type === "L" ? { ...header({ name: "././@LongLink", type: "L" }, body.length) } : header(e, body.length)
    parts.push(Tar.encode(h), body, Buffer.alloc(Tar.padding(body.length)))
  }
  parts.push(Tar.endOfArchive())
  return Buffer.concat(parts)
}

const dir = (name: string): E => ({ name, type: Tar.TypeFlag.directory })
const file = (name: string): E => ({ name, content: "evil" })
const symlink = (name: string, linkname: string): E => ({ name, type: Tar.TypeFlag.symlink, linkname })
const hardlink = (name: string, linkname: string): E => ({ name, type: Tar.TypeFlag.link, linkname })

/** Hostile layers; `out` is the absolute path of the sentinel directory beside the root. */
const hostile = (out: string): ReadonlyArray<readonly [string, ReadonlyArray<E>]> => [
  ["dot-dot file", [file("../evil")]],
  ["dot-dot twice", [file("../../evil")]],
  ["dot-dot inside", [file("a/../../evil")]],
  ["dot-slash dot-dot", [file("./../evil")]],
  ["dot-dot after dirs", [dir("a/"), dir("a/b/"), file("a/b/../../../evil")]],
  ["dot-dot into the sentinel", [file("../outside/secret")]],
  ["absolute into the sentinel", [file(`${out}/secret`)]],
  ["absolute elsewhere", [file("/tmp/blobchain-hostile-evil")]],
  ["absolute directory", [dir(`${out}/newdir/`)]],
  ["dot-dot directory", [dir("../evildir/")]],
  ["dot-dot symlink", [symlink("../evilsym", "/etc/passwd")]],
  ["dot-dot fifo", [{ name: "../evilfifo", type: Tar.TypeFlag.fifo }]],
  ["dot-dot device", [{ name: "../evildev", type: Tar.TypeFlag.char }]],
  ["write through an absolute symlink", [symlink("link", out), file("link/secret")]],
  ["write through a relative symlink", [symlink("link", "../outside"), file("link/secret")]],
  ["write through a symlink to /", [symlink("link", "/"), dir("link/tmp/"), file("link/tmp/blobchain-hostile-evil")]],
  ["write through a chain of symlinks", [symlink("a", "b"), symlink("b", out), file("a/secret")]],
  ["directory swapped for a symlink", [dir("d/"), symlink("d", out), file("d/secret")]],
  ["directory swapped after a write", [dir("d/"), file("d/x"), symlink("d", out), file("d/x")]],
  ["deep parent swapped for a symlink", [dir("a/"), dir("a/b/"), symlink("a", out), file("a/b/evil")]],
  ["swap and create a directory through it", [dir("d/"), symlink("d", out), dir("d/sub/x/")]],
  ["hard link out by dot-dot", [hardlink("h", "../outside/secret")]],
  ["hard link out by absolute name", [hardlink("h", `${out}/secret`)]],
  ["hard link out through a symlink", [symlink("s", out), hardlink("h", "s/secret")]],
  ["hard link out through a swapped directory", [dir("s/"), symlink("s", out), hardlink("h", "s/secret")]],
  ["whiteout out by dot-dot", [file("../.wh.secret")]],
  ["whiteout of dot-dot", [dir("a/"), file("a/.wh..")]],
  ["whiteout through a symlink", [symlink("s", out), file("s/.wh.secret")]],
  ["opaque marker through a symlink", [symlink("s", out), file("s/.wh..wh..opq")]],
  ["whiteout through a swapped directory", [dir("d/"), symlink("d", out), file("d/.wh.secret")]],
  ["PAX long name with dot-dot", [file(`../${"x".repeat(150)}`)]],
  ["PAX long name through a symlink", [symlink("s", out), file(`s/${"x".repeat(150)}`)]],
  ["GNU long name with dot-dot", [{ name: "", type: "L", content: "../evil" }, file("innocent")]],
  ["GNU long name absolute", [{ name: "", type: "L", content: `${out}/secret` }, file("innocent")]],
  ["PAX long hard link target out", [hardlink("h", `../outside/${"y".repeat(120)}`)]],
  ["symlink replacing the root", [symlink(".", out)]],
  ["over-long name hiding a dot-dot", [file(`${"z".repeat(300)}/../../evil`)]]
]

const applyHostile = (entries: ReadonlyArray<E>, gzip: boolean) =>
  Effect.gen(function*() {
    const tmp = yield* Effect.acquireRelease(Effect.sync(() => tempDir("hostile")), (t) => Effect.sync(t.remove))
    const root = `${tmp.dir}/root`
    const outside = `${tmp.dir}/outside`
    fs.mkdirSync(root)
    fs.mkdirSync(`${outside}/sub`, { recursive: true })
    fs.writeFileSync(`${outside}/secret`, "secret")
    const before = { outside: manifest(outside), siblings: fs.readdirSync(tmp.dir).sort() }
    const layers = hostile(outside)
    return { tmp, root, outside, before, layers, gzip }
  })

describe("hostile layers", () => {
  it("has at least 30 of them", () => {
    expect(hostile("/x").length).toBeGreaterThanOrEqual(30)
  })

  for (const [index, [title]] of hostile("/x").entries()) {
    it.scopedLive(`refuses: ${title}`, () =>
      Effect.gen(function*() {
        const { before, layers, outside, root, tmp } = yield* applyHostile([], false)
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
      const { before, outside, root } = yield* applyHostile([], false)
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
