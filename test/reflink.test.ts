/**
 * Copies made by reflink on a real XFS (a loop-mounted image; root only): the files a copy
 * shares with its original are told the same by their blocks, not read, and a file changed in
 * the copy (its blocks copied on write) is read and carried into the layer.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Blobchain, Build } from "../src/index.js"
import * as ContentStore from "../src/ContentStore.js"
import { mayShare, sameBlocks } from "../src/fs/extents.js"
import { keyOf } from "../src/ContentIndex.js"
import { Threads } from "../src/Threads.js"
import { addonPath } from "../src/internal/addon.js"
import { createRequire } from "node:module"
import { scratch } from "./support/scratch.js"
import { haveTool } from "./support/tools.js"

const work = scratch("reflink")

// an XFS with reflinks on a loop device, as root with mkfs.xfs (xfsprogs); else why not, and skipped
const mount = (): { readonly dir: string } | { readonly why: string } => {
  if (process.getuid?.() !== 0) return { why: "not root" }
  if (!haveTool("mkfs.xfs")) return { why: "no mkfs.xfs" }
  const images = work.fresh("image")
  fs.mkdirSync(images, { recursive: true })
  const image = path.join(images, "xfs.img")
  const dir = work.fresh("xfs")
  fs.mkdirSync(dir, { recursive: true })
  try {
    execFileSync("truncate", ["-s", "300M", image])
    execFileSync("mkfs.xfs", ["-q", "-f", "-m", "reflink=1", image], { stdio: "pipe" })
    execFileSync("mount", ["-o", "loop", image, dir], { stdio: "pipe" })
    return { dir }
  } catch (error) {
    return { why: `no loop mount here: ${String(error).split("\n")[0]}` }
  }
}
const xfs = mount()
const mounted = "dir" in xfs ? xfs.dir : undefined
if ("why" in xfs) console.warn(`reflink tests skipped: ${xfs.why}`)

afterAll(() => {
  if (mounted !== undefined) execFileSync("umount", [mounted])
  work.remove()
})

// random bytes: a file of `size` under `dir`
const file = (dir: string, name: string, size: number) => {
  fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
  fs.writeFileSync(path.join(dir, name), Buffer.from(Array.from({ length: size }, (_, i) => (i * 7919 + name.length * 31) & 255)))
}

// overwrite a few bytes in place, keeping size and (to the nanosecond) mtime: only the contents tell
const editInPlace = (file: string) => {
  const times = `${file}.times`
  execFileSync("touch", ["-r", file, times])
  const fd = fs.openSync(file, "r+")
  fs.writeSync(fd, Buffer.from("edited in place"), 0, 15, 100)
  fs.closeSync(fd)
  execFileSync("touch", ["-r", times, file])
  fs.rmSync(times)
}

describe.skipIf(mounted === undefined)("copies made by reflink", () => {
  it("share blocks with their originals until one of them is written", async () => {
    const dir = path.join(mounted!, "pairs")
    file(dir, "a", 200_000)
    execFileSync("cp", ["--reflink=always", path.join(dir, "a"), path.join(dir, "b")])
    execFileSync("cp", ["--reflink=never", path.join(dir, "a"), path.join(dir, "c")])
    execFileSync("cp", ["--reflink=always", path.join(dir, "a"), path.join(dir, "d")])
    editInPlace(path.join(dir, "d"))
    expect(mayShare(dir)).toBe(true)
    expect(mayShare("/proc")).toBe(false)
    const keyed = (name: string) => ({ path: path.join(dir, name), key: keyOf(fs.lstatSync(path.join(dir, name), { bigint: true })) })
    const stale = { ...keyed("b"), key: { ...keyed("b").key, mtimeNs: 1n } }
    expect(await sameBlocks([
      [keyed("a"), keyed("b")],
      [keyed("a"), keyed("c")],
      [keyed("a"), keyed("d")],
      [keyed("a"), stale],
      [keyed("a"), { path: path.join(dir, "missing"), key: keyed("b").key }]
    ])).toEqual([true, false, false, false, false])
  })

  // a write anywhere in a shared file (the first block, the last, past a 64 KiB boundary, the same
  // bytes again, a truncate and append back) copies its blocks: never told the same while its
  // bytes differ, and an untouched copy always is
  it("tells a pair the same only when their bytes are", () => fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 300_000 }),
    fc.array(fc.record({
      what: fc.constantFrom("overwrite", "same bytes", "truncate and append back"),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 5000 })
    }), { maxLength: 3 }),
    async (size, edits) => {
      const dir = path.join(mounted!, `prop-${Math.random().toString(36).slice(2)}`)
      file(dir, "a", size)
      execFileSync("cp", ["--reflink=always", path.join(dir, "a"), path.join(dir, "b")])
      const b = path.join(dir, "b")
      for (const { what, at, bytes } of edits) {
        const fd = fs.openSync(b, "r+")
        const offset = at % size
        if (what === "overwrite") fs.writeSync(fd, bytes, 0, Math.min(bytes.length, size - offset), offset)
        else if (what === "same bytes") {
          const again = Buffer.alloc(Math.min(bytes.length, size - offset))
          fs.readSync(fd, again, 0, again.length, offset)
          fs.writeSync(fd, again, 0, again.length, offset)
        } else {
          const tail = Buffer.alloc(size - offset)
          fs.readSync(fd, tail, 0, tail.length, offset)
          fs.ftruncateSync(fd, offset)
          fs.writeSync(fd, tail, 0, tail.length, offset)
        }
        fs.closeSync(fd)
      }
      const keyed = (p: string) => ({ path: p, key: keyOf(fs.lstatSync(p, { bigint: true })) })
      const [same] = await sameBlocks([[keyed(path.join(dir, "a")), keyed(b)]])
      if (edits.length === 0) expect(same).toBe(true)
      if (same) expect(fs.readFileSync(b).equals(fs.readFileSync(path.join(dir, "a")))).toBe(true)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  ), { numRuns: 40 }), 60_000)

  it.live("a build over a reflinked copy reads only the files changed in it", () =>
    Effect.scoped(Effect.gen(function*() {
      const v1 = path.join(mounted!, "v1")
      // the edited file alone is more than a few small files read on the main thread
      for (let i = 0; i < 40; i++) file(v1, `d${i % 4}/f${i}`, i === 5 ? 300_000 : 40_000 + i)
      const v2 = path.join(mounted!, "v2")
      execFileSync("cp", ["-a", "--reflink=always", v1, v2])
      editInPlace(path.join(v2, "d1/f5"))
      file(v2, "new/file", 1000)
      // older than a racy second when read: digests kept, pairs tried
      yield* Effect.sleep("1100 millis")
      const context = yield* Layer.build(Blobchain.layerLocal({ root: path.join(mounted!, "state") }))
      const threads = Context.get(context, Threads)
      const read: Array<string> = []
      const counted = Context.add(context, Threads, {
        ...threads,
        hashes: {
          ...threads.hashes,
          digestFiles: (files) => (read.push(...files.map((f) => f.path)), threads.hashes.digestFiles(files))
        }
      })
      // v1's files read for its layer and kept in the index
      yield* Build.build([v1]).pipe(Effect.provide(counted))
      read.length = 0
      const built = yield* Build.build([v1, v2]).pipe(Effect.provide(counted))
      // of v2's files, the one written alone: the others are v1's blocks, and get v1's digests
      expect(read).toEqual([path.join(v2, "d1/f5")])
      const layer = yield* ContentStore.readAll(built.image.layers[1]!.digest).pipe(Effect.provide(context))
      const names = execFileSync("tar", ["-tf", "-"], { input: zlib.gunzipSync(layer) }).toString().split("\n").filter((n) => n !== "")
      expect(names.filter((n) => !n.endsWith("/")).sort()).toEqual(["d1/f5", "new/file"])
      // and a copy made without reflinks is read whole, as before
      const v3 = path.join(mounted!, "v3")
      execFileSync("cp", ["-a", "--reflink=never", v2, v3])
      yield* Effect.sleep("1100 millis")
      read.length = 0
      yield* Build.build([v2, v3]).pipe(Effect.provide(counted))
      // v2's files all known by now (told or read), v3's all read
      expect(read.length).toBe(41)
      expect(read.every((p) => p.startsWith(`${v3}/`))).toBe(true)
    })))
})

describe("shared blocks elsewhere", () => {
  it("are never found on a file system without them, and the addon refuses what is not pairs of paths", async () => {
    const dir = work.fresh("plain")
    file(dir, "a", 100_000)
    execFileSync("cp", ["--reflink=auto", path.join(dir, "a"), path.join(dir, "b")])
    const keyed = (name: string) => ({ path: path.join(dir, name), key: keyOf(fs.lstatSync(path.join(dir, name), { bigint: true })) })
    const reflinks = ["xfs", "btrfs", "bcachefs", "ocfs2"].includes(execFileSync("stat", ["-f", "-c", "%T", dir]).toString().trim())
    expect(mayShare(dir)).toBe(reflinks)
    if (!reflinks) expect(await sameBlocks([[keyed("a"), keyed("b")]])).toEqual([false])
    const addon = createRequire(import.meta.url)(addonPath("extents")) as { sameExtents: (...args: Array<unknown>) => void }
    expect(() => addon.sameExtents(["a"], () => {})).toThrow(TypeError)
    expect(() => addon.sameExtents(["a", 1], () => {})).toThrow("sameExtents: every path must be a string")
    expect(() => addon.sameExtents(["a", "b"])).toThrow(TypeError)
  })
})
