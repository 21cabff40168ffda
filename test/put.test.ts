/**
 * `--layer SRC:DEST` is confined to the image: DEST resolves inside the snapshot as if it were
 * `/`, and the put never writes through a symlink the base holds. The host stays as it was.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Option } from "effect"
import { fromMounts, lookup, type Node, type Tree } from "../src/fs/tree.js"
import { fingerprintOf } from "../src/fs/fingerprint.js"
import * as Source from "../src/Source.js"
import * as Put from "../src/snapshot/put.js"
import { manifest } from "./support/trees.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, haveTool, run } from "./support/tools.js"

const umoci = haveTool("umoci")
const work = scratch("put")
afterAll(() => work.remove())
const fresh = work.fresh

const plain = (root: string): Tree => ({ root: [root], overlay: false })

/** A canary directory outside every tree, with its manifest to compare against. */
const canary = () => {
  const dir = fresh("canary")
  write(dir, "file", "canary\n")
  write(dir, "sub/keep", "keep\n")
  return { dir, before: manifest(dir) }
}

describe("resolving DEST inside a snapshot", () => {
  it("follows symlinks as if the snapshot were /, whatever their targets", () => {
    const root = fresh("tree")
    fs.mkdirSync(path.join(root, "usr/lib"), { recursive: true })
    fs.mkdirSync(path.join(root, "a/b"), { recursive: true })
    fs.symlinkSync("/usr/lib", path.join(root, "lib"))
    fs.symlinkSync("../../../../../../../etc", path.join(root, "a/b/up"))
    fs.symlinkSync("lib", path.join(root, "chain1"))
    fs.symlinkSync("/chain1/x", path.join(root, "chain2"))
    fs.symlinkSync("loop2", path.join(root, "loop1"))
    fs.symlinkSync("loop1", path.join(root, "loop2"))
    write(root, "usr/lib/file", "x")
    fs.symlinkSync("/usr/lib/file", path.join(root, "filelink"))
    const at = (dest: string) => Put.resolve(plain(root), dest)
    expect(at("/lib/app")).toEqual({ parts: ["usr", "lib", "app"] })
    expect(at("a/b/up/app")).toEqual({ parts: ["etc", "app"] })
    expect(at("/chain2/y")).toEqual({ parts: ["usr", "lib", "x", "y"] })
    expect(at("/../../x/../srv")).toEqual({ parts: ["srv"] })
    expect(at("/")).toEqual({ parts: [] })
    expect(at("/loop1/x")).toMatch(/too many levels of symbolic links at \/loop[12]/)
    expect(at("/usr/lib/file/x")).toBe("/usr/lib/file is not a directory in the image")
    expect(at("/filelink")).toBe("/usr/lib/file is not a directory in the image")
  })

  it("reads an overlay's merged tree: a lower symlink is followed, a whited-out one is not there", () => {
    const lower = fresh("lower")
    const upper = fresh("upper")
    fs.mkdirSync(path.join(lower, "usr/share"), { recursive: true })
    fs.symlinkSync("/usr/share", path.join(lower, "share"))
    fs.symlinkSync("/usr/share", path.join(lower, "gone"))
    fs.mkdirSync(upper)
    write(upper, ".wh.gone", "")
    const tree: Tree = { root: [upper, lower], overlay: true }
    expect(Put.resolve(tree, "/share/app")).toEqual({ parts: ["usr", "share", "app"] })
    expect(Put.resolve(tree, "/gone/app")).toEqual({ parts: ["gone", "app"] })
  })
})

/** A source directory the base has in a symlink-free form, and a base dir with hostile links. */
const hostileBase = (host: string) => {
  const base = fresh("base")
  fs.mkdirSync(path.join(base, "var"), { recursive: true })
  fs.mkdirSync(path.join(base, "srv/app"), { recursive: true })
  fs.mkdirSync(path.join(base, "opt"), { recursive: true })
  fs.symlinkSync(host, path.join(base, "var/run"))
  fs.symlinkSync(`../../../../../../..${host}`, path.join(base, "opt/up"))
  // names the put's files will land on: each a symlink to a canary file or directory
  fs.symlinkSync(path.join(host, "file"), path.join(base, "srv/app/config"))
  fs.symlinkSync(path.join(host, "sub"), path.join(base, "srv/app/sub"))
  write(base, "etc/hostname", "base\n")
  return base
}

const appSource = () => {
  const src = fresh("app")
  write(src, "config", "from the put\n")
  write(src, "sub/keep", "overwritten?\n")
  write(src, "sub/new", "new\n")
  return src
}

describe.each(["native", "overlay"] as const)("blobchain build --layer on the %s snapshotter", (snapshotter) => {
  it("never writes through a symlink of the base, and puts the files where the image's links lead", { skip: !umoci }, async () => {
    const host = canary()
    const base = hostileBase(host.dir)
    const src = appSource()
    const state = fresh("state")
    const out = fresh("out")
    const result = await blobchain([
      "build", base, "--snapshotter", snapshotter, "--state", state, "--out", out,
      "--layer", `${src}:/var/run/app`, "--layer", `${src}:/opt/up/app`, "--layer", `${src}:/srv/app`
    ])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    expect(manifest(host.dir)).toEqual(host.before)
    expect(fs.readFileSync("/etc/passwd", "utf8")).toContain("root:")
    const bundle = fresh("bundle")
    run("umoci", ["unpack", "--image", `${out}:latest`, bundle])
    const rootfs = path.join(bundle, "rootfs")
    // the absolute link /var/run -> HOST leads to HOST inside the image; the climbing one too
    expect(fs.readFileSync(path.join(rootfs, host.dir, "app/config"), "utf8")).toBe("from the put\n")
    expect(fs.lstatSync(path.join(rootfs, "var/run")).isSymbolicLink()).toBe(true)
    expect(fs.lstatSync(path.join(rootfs, "opt/up")).isSymbolicLink()).toBe(true)
    // a name the base held as a symlink is replaced by the put's file or directory
    expect(fs.lstatSync(path.join(rootfs, "srv/app/config")).isFile()).toBe(true)
    expect(fs.readFileSync(path.join(rootfs, "srv/app/config"), "utf8")).toBe("from the put\n")
    expect(fs.lstatSync(path.join(rootfs, "srv/app/sub")).isDirectory()).toBe(true)
    expect(fs.readdirSync(path.join(rootfs, "srv/app/sub")).sort()).toEqual(["keep", "new"])
    expect(fs.readFileSync(path.join(rootfs, "etc/hostname"), "utf8")).toBe("base\n")
    // and a normal build on the same state directory still works
    expect((await blobchain(["build", base, "--snapshotter", snapshotter, "--state", state, "--out", fresh("out")])).code).toBe(0)
  })

  it("a DEST through a file, or a loop of links, is one line naming it and exit 1", async () => {
    const base = fresh("base")
    write(base, "etc/hostname", "base\n")
    fs.symlinkSync("loop2", path.join(base, "loop1"))
    fs.symlinkSync("loop1", path.join(base, "loop2"))
    const src = appSource()
    const state = fresh("state")
    const file = await blobchain(["build", base, "--snapshotter", snapshotter, "--state", state, "--out", fresh("out"), "--layer", `${src}:/etc/hostname/app`])
    expect(file.code).toBe(1)
    expect(file.stderr.trim().split("\n")).toEqual([expect.stringContaining("/etc/hostname is not a directory in the image")])
    const loop = await blobchain(["build", base, "--snapshotter", snapshotter, "--state", state, "--out", fresh("out"), "--layer", `${src}:/loop1/app`])
    expect(loop.code).toBe(1)
    expect(loop.stderr.trim().split("\n")).toEqual([expect.stringContaining("too many levels of symbolic links")])
  })
})

describe("a put over a directory", () => {
  it.scoped("keeps the base's other names and replaces, never follows, the ones it brings", () =>
    Effect.gen(function*() {
      const host = canary()
      const root = fresh("root")
      write(root, "srv/old", "old\n")
      fs.symlinkSync(path.join(host.dir, "file"), path.join(root, "srv/f"))
      fs.symlinkSync(host.dir, path.join(root, "srv/d"))
      const src = fresh("src")
      write(src, "f", "put\n")
      write(src, "d/keep", "put\n")
      const parent = Source.directoryRef(Source.Printed.of(root, fingerprintOf(root)), Option.none())
      const put = Source.putRef(Source.Printed.of(src, fingerprintOf(src)), "srv", Option.some(parent))
      const tree = fromMounts(yield* put.mount(true))
      if (typeof tree === "string") throw new Error(tree)
      // the image's tree as the put's layer sees it: each name looked up in the merged directories
      const node = (relative: string) => {
        let dirs = tree.root
        let found: Node | undefined
        for (const name of relative.split("/")) {
          found = lookup(tree, dirs, name)
          if (found === undefined) return undefined
          dirs = found.dirs
        }
        return found
      }
      expect(manifest(host.dir)).toEqual(host.before)
      expect(fs.readFileSync(node("srv/old")!.path, "utf8")).toBe("old\n")
      expect(node("srv/f")!.stat.isSymbolicLink()).toBe(false)
      expect(fs.readFileSync(node("srv/f")!.path, "utf8")).toBe("put\n")
      expect(node("srv/d")!.stat.isDirectory()).toBe(true)
      expect(fs.readFileSync(node("srv/d/keep")!.path, "utf8")).toBe("put\n")
    }))
})
