/**
 * Files hashed ahead of a diff on worker threads: the digests are the files' own, a file that
 * changed size or went away is left to the walk, and a layer is the same with and without the
 * threads (an edit that keeps every stat is still found), each compared file read once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { Contents, type DigestFiles } from "../src/fs/contents.js"
import { type LayerHashing, makeHashThreads, piecesOf } from "../src/fs/hashThreads.js"
import { applyOps, materialize, opArb, type Spec } from "./support/trees.js"
import { BufferPool, layerTar } from "../src/diff/layer.js"
import * as Digest from "../src/Digest.js"

const sha = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

const scratch = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-hash-threads-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const threads = Effect.acquireRelease(Effect.sync(makeHashThreads), (t) => Effect.promise(t.close))

// the layer's diffID and the digests it read, hashed here or (`hashing`) on a hash thread
const layerOf = (lower: string, upper: string, digestFiles?: DigestFiles, hashing?: LayerHashing, pool = new BufferPool()) =>
  Effect.promise(async () => {
    // the tar's bytes hashed here too, and counted
    const inner = Digest.hasher()
    let tarSize = 0
    const hash: Digest.Hasher = {
      algorithm: inner.algorithm,
      update: (bytes) => {
        tarSize += bytes.length
        inner.update(bytes)
      },
      digest: () => inner.digest()
    }
    const contents = new Contents()
    for await (const chunk of layerTar(
      { root: [lower], overlay: false },
      { root: [upper], overlay: false },
      { contents, ...(digestFiles === undefined ? {} : { digestFiles }), ...(hashing === undefined ? {} : { hashing }) },
      hash,
      pool
    )) {
      void chunk
      await hashing?.ready()
    }
    const diffId = hashing === undefined ? hash.digest() : await hashing.finish()
    // the tar's bytes were hashed here too: the thread's digest must be the same
    expect(diffId).toBe(hash.digest())
    return { diffId, read: contents.takeRead(), tarSize }
  })

// an empty directory and a tree beside it, under `dir`
const emptyAndTree = (dir: string) => {
  const empty = NodePath.join(dir, "empty")
  const tree = NodePath.join(dir, "tree")
  fs.mkdirSync(empty)
  fs.mkdirSync(tree)
  return { empty, tree }
}

// `count` files of a MiB each in `tree`, each of its own byte
const mibFiles = (tree: string, count: number) => {
  for (let i = 0; i < count; i++) fs.writeFileSync(NodePath.join(tree, `f${i}`), Buffer.alloc(1 << 20, i))
}

const byFile = (records: ReadonlyArray<{ readonly key: { readonly ino: bigint }; readonly digest: string }>) =>
  records.map((r) => `${r.key.ino} ${r.digest}`).sort()

describe("a batch's pieces", () => {
  it("hold every file once, the largest first, each up to an eighth of the batch (1–32 MiB) or 512 files", () =>
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 40 << 20 }), { maxLength: 3000 }), (sizes) => {
      const files = sizes.map((size) => ({ size }))
      const pieces = piecesOf(files)
      const order = pieces.flat()
      expect([...order].sort((a, b) => a - b)).toEqual(sizes.map((_, i) => i))
      for (let k = 1; k < order.length; k++) expect(sizes[order[k - 1]!]!).toBeGreaterThanOrEqual(sizes[order[k]!]!)
      const total = sizes.reduce((a, b) => a + b, 0)
      const most = Math.max(1 << 20, Math.min(32 << 20, Math.ceil(total / 8)))
      for (const piece of pieces) {
        expect(piece.length).toBeGreaterThan(0)
        expect(piece.length).toBeLessThanOrEqual(512)
        // it closes at the file that reaches the bound
        const before = piece.slice(0, -1).reduce((a, i) => a + sizes[i]!, 0)
        expect(before).toBeLessThan(most)
      }
      // a batch of more than a piece's bytes is shared: at least two pieces for two threads
      if (total >= 2 * most && sizes.length >= 2) expect(pieces.length).toBeGreaterThanOrEqual(2)
    })))
})

describe("hash threads", () => {
  it.scopedLive("give each file's sha256; a file gone or of another size than asked is left undefined", () =>
    Effect.gen(function*() {
      const dir = yield* scratch
      const hashes = yield* threads
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 3 << 19 }), { minLength: 1, maxLength: 6 }), async (blobs) => {
            const files = blobs.map((bytes, i) => {
              const path = NodePath.join(dir, `f${i}`)
              fs.writeFileSync(path, bytes)
              return { path, size: bytes.length }
            })
            const asked = [...files, { path: NodePath.join(dir, "absent"), size: 1 }, { path: files[0]!.path, size: files[0]!.size + 1 }]
            const digests = await hashes.digestFiles(asked)
            expect(digests).toEqual([...blobs.map(sha), undefined, undefined])
          }),
          { numRuns: 15 }
        )
      )
    }))

  it.scopedLive("a copied tree's layer is the same with and without them, a same-stat edit included, each compared file read once", () =>
    Effect.gen(function*() {
      const dir = yield* scratch
      const hashes = yield* threads
      const lower = NodePath.join(dir, "lower")
      const upper = NodePath.join(dir, "upper")
      fs.mkdirSync(NodePath.join(lower, "d"), { recursive: true })
      // enough bytes in one directory to be read ahead (a few hundred KiB)
      for (let i = 0; i < 8; i++) fs.writeFileSync(NodePath.join(lower, "d", `f${i}`), Buffer.alloc(100_000, i))
      fs.cpSync(lower, upper, { recursive: true, preserveTimestamps: true })
      // one file edited to the same size: with every time put back to whole seconds (as dpkg
      // and tar leave them), only its contents tell
      fs.writeFileSync(NodePath.join(upper, "d", "f3"), Buffer.alloc(100_000, 0x7f))
      for (const root of [lower, upper]) {
        for (const name of ["d/f0", "d/f1", "d/f2", "d/f3", "d/f4", "d/f5", "d/f6", "d/f7", "d", ""]) {
          fs.utimesSync(NodePath.join(root, name), 1_000_000, 1_000_000)
        }
      }

      let given: Array<string> = []
      const counting: DigestFiles = (files) => {
        given = given.concat(files.map((f) => f.path))
        return hashes.digestFiles(files)
      }
      const alone = yield* layerOf(lower, upper)
      const ahead = yield* layerOf(lower, upper, counting)
      expect(ahead.diffId).toBe(alone.diffId)
      // every compared file, both sides, went to the threads once
      expect(given.sort()).toEqual([lower, upper].flatMap((root) => [...Array(8).keys()].map((i) => NodePath.join(root, "d", `f${i}`))).sort())
      // both sides of the 8 pairs were read to compare them, and the edited file once more for the
      // layer, which holds it alone
      for (const { read } of [alone, ahead]) {
        expect(read.length).toBe(17)
        expect(read.filter((r) => r.digest === sha(Buffer.alloc(100_000, 0x7f))).length).toBe(2)
      }
      const failing: DigestFiles = () => Promise.reject(new Error("no thread"))
      expect((yield* layerOf(lower, upper, failing)).diffId).toBe(alone.diffId)
      // lying threads would change the answer: what they say is what the walk uses
      const lying: DigestFiles = (files) => Promise.resolve(files.map(() => sha(Buffer.from("same"))))
      expect((yield* layerOf(lower, upper, lying)).diffId).not.toBe(alone.diffId)
    }))

  it.scopedLive.prop(
    "a layer hashed on a thread has the diffID and file digests of one hashed here",
    [fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.array(fc.integer({ min: 0, max: 3 << 20 }), { maxLength: 3 })],
    ([ops, bigSizes]) =>
      Effect.gen(function*() {
        const dir = yield* scratch
        const hashes = yield* threads
        const { empty, tree } = emptyAndTree(dir)
        const spec: Spec = applyOps(new Map(), ops)
        materialize(spec, tree)
        // files over a chunk, so that spans cross chunks
        bigSizes.forEach((size, i) => fs.writeFileSync(NodePath.join(tree, `big${i}`), Buffer.alloc(size, i + 1)))
        const here = yield* layerOf(empty, tree)
        const hashing = yield* Effect.promise(() => hashes.layerHashing())
        const there = yield* layerOf(empty, tree, undefined, hashing!)
        expect(there.diffId).toBe(here.diffId)
        expect(byFile(there.read)).toEqual(byFile(here.read))
        // handed over instead of copied, each buffer back in the pool once hashed, and used
        // again for the chunks after it: the same layer
        const pool = new BufferPool()
        let back = 0
        const handed = yield* Effect.promise(() => hashes.layerHashing((buffer) => (back++, pool.release(buffer))))
        const recycled = yield* layerOf(empty, tree, undefined, handed!, pool)
        expect(recycled.diffId).toBe(here.diffId)
        expect(byFile(recycled.read)).toEqual(byFile(here.read))
        expect(back).toBe(Math.ceil(here.tarSize / (1 << 20)))
      }),
    { fastCheck: { numRuns: 12 } }
  )

  it.scopedLive("a layer's copies to the thread come back for the next chunks: no buffer per chunk", () =>
    Effect.gen(function*() {
      const dir = yield* scratch
      const hashes = yield* threads
      const { empty, tree } = emptyAndTree(dir)
      mibFiles(tree, 24)
      const hashing = (yield* Effect.promise(() => hashes.layerHashing()))!
      const { diffId, tarSize } = yield* layerOf(empty, tree, undefined, hashing)
      expect(diffId).toMatch(/^sha256:/)
      expect(tarSize).toBeGreaterThan(24 << 20)
      // at most the chunks in flight at once (8), whatever the machine's speed
      expect(hashing.copyBuffers).toBeGreaterThanOrEqual(1)
      expect(hashing.copyBuffers).toBeLessThanOrEqual(9)
    }))

  it.scopedLive("a hash thread that dies fails the layer: no diffID is made up", () =>
    Effect.gen(function*() {
      const dir = yield* scratch
      const hashes = yield* threads
      const tree = NodePath.join(dir, "tree")
      fs.mkdirSync(tree)
      mibFiles(tree, 24)
      const hashing = (yield* Effect.promise(() => hashes.layerHashing()))!
      const outcome = yield* Effect.promise(async () => {
        let chunks = 0
        try {
          for await (const chunk of layerTar({ root: [], overlay: false }, { root: [tree], overlay: false }, { hashing }, Digest.hasher(), new BufferPool())) {
            void chunk
            if (++chunks === 2) await hashes.kill()
            await hashing.ready()
          }
          return await hashing.finish()
        } catch (error) {
          return error as Error
        }
      })
      expect(outcome).toBeInstanceOf(Error)
      expect(String(outcome)).toMatch(/exited|lost/)
      // a fresh session works on the thread started again
      const again = (yield* Effect.promise(() => hashes.layerHashing()))!
      const diffId = yield* layerOf(NodePath.join(dir, "tree"), tree, undefined, again)
      expect(diffId.diffId).toMatch(/^sha256:/)
    }))
})
