/**
 * An output blob already in place: kept when the content-hash index vouches for its current
 * stat key (not read again), read and replaced when nothing does and its bytes are wrong.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import * as ContentIndex from "../src/ContentIndex.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"
import { place } from "../src/image/blobFile.js"
import { Threads } from "../src/Threads.js"
import * as WorkerThreads from "../src/WorkerThreads.js"

const second = 1_000_000_000n
const size = 4096
const blob = Buffer.alloc(size, 0x61)
const digest = Digest.ofBytes(blob)

const stack = Layer.merge(MemoryContentStore.layer, ContentIndex.layerMemory)

// a file of the blob's size holding other bytes, and its stat key
const wrongFile = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-blob-file-"))
    const dest = NodePath.join(dir, "blob")
    fs.writeFileSync(dest, Buffer.alloc(size, 0x62))
    return { dir, dest, key: ContentIndex.keyOf(fs.lstatSync(dest, { bigint: true })) }
  }),
  ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map(({ dest, key }) => ({ dest, key })))

describe("placing an output blob over a file already there", () => {
  it.scoped("a trusted index record for the file's key answers: the file is not read", () =>
    Effect.gen(function*() {
      yield* ContentStore.writeBlob("blob", blob)
      const { dest, key } = yield* wrongFile
      const index = yield* ContentIndex.ContentIndex
      // a record says the file holds the blob: only a place that never reads it can believe it
      yield* index.record([{ key, digest, readAtNs: key.ctimeNs + 2n * second }])
      expect(yield* place(digest, size, dest, undefined)).toBe("kept")
      expect(fs.readFileSync(dest)[0]).toBe(0x62)
    }).pipe(Effect.provide(stack)))

  it.scoped("without a record (or with a racy one) the file is read, and wrong bytes are replaced", () =>
    Effect.gen(function*() {
      yield* ContentStore.writeBlob("blob", blob)
      const { dest, key } = yield* wrongFile
      const index = yield* ContentIndex.ContentIndex
      // read within a second of its ctime: racy, not trusted
      yield* index.record([{ key, digest, readAtNs: key.ctimeNs + second / 2n }])
      expect(yield* place(digest, size, dest, undefined)).toBe("copied")
      expect(fs.readFileSync(dest).equals(blob)).toBe(true)
      // a record for another key of the same file (it changed since) does not answer either
      fs.writeFileSync(dest, Buffer.alloc(size, 0x62))
      const changed = ContentIndex.keyOf(fs.lstatSync(dest, { bigint: true }))
      yield* index.record([{ key: { ...changed, mtimeNs: changed.mtimeNs - 1n }, digest, readAtNs: changed.ctimeNs + 2n * second }])
      expect(yield* place(digest, size, dest, undefined)).toBe("copied")
      expect(fs.readFileSync(dest).equals(blob)).toBe(true)
    }).pipe(Effect.provide(stack)))

  it.scopedLive("a file read and found right is recorded under its key", () =>
    Effect.gen(function*() {
      yield* ContentStore.writeBlob("blob", blob)
      const { dest } = yield* wrongFile
      fs.writeFileSync(dest, blob)
      // past git's racy second, so that the record is kept
      yield* Effect.sleep("1100 millis")
      expect(yield* place(digest, size, dest, undefined)).toBe("kept")
      const index = yield* ContentIndex.ContentIndex
      expect(yield* index.lookup([ContentIndex.keyOf(fs.lstatSync(dest, { bigint: true }))])).toEqual([digest])
    }).pipe(Effect.provide(stack)))

  // a layer's blob is gigabytes: read on the event loop it held a rerun for seconds (a 2 GB blob,
  // 6–8 s against 2.7–2.9 s on a hash thread)
  const counted = (asked: Array<string>, fail: boolean) =>
    Layer.effect(
      Threads,
      Effect.map(Threads, (threads) => ({
        ...threads,
        hashes: {
          ...threads.hashes,
          digestFiles: (files) => {
            asked.push(...files.map((f) => f.path))
            return fail ? Promise.reject(new Error("the thread is gone")) : threads.hashes.digestFiles(files)
          }
        }
      }))
    ).pipe(Layer.provide(WorkerThreads.layer))

  it.scoped("with hash threads in the stack, the file is read there, once", () =>
    Effect.gen(function*() {
      yield* ContentStore.writeBlob("blob", blob)
      const { dest } = yield* wrongFile
      const asked: Array<string> = []
      // wrong bytes: read on a thread, once, and replaced; the copy made then is kept unread
      const placed = (expected: string) =>
        Effect.gen(function*() {
          expect(yield* place(digest, size, dest, undefined)).toBe(expected)
          expect(fs.readFileSync(dest).equals(blob)).toBe(true)
        }).pipe(Effect.provide(counted(asked, false)))
      yield* placed("copied")
      expect(asked).toEqual([dest])
      yield* placed("kept")
      expect(asked).toEqual([dest])
    }).pipe(Effect.provide(stack)))

  it.scoped("a hash thread that cannot answer: the file is read on the event loop instead", () =>
    Effect.gen(function*() {
      yield* ContentStore.writeBlob("blob", blob)
      const { dest } = yield* wrongFile
      const asked: Array<string> = []
      expect(yield* place(digest, size, dest, undefined).pipe(Effect.provide(counted(asked, true)))).toBe("copied")
      expect(asked).toEqual([dest])
      expect(fs.readFileSync(dest).equals(blob)).toBe(true)
      expect(yield* place(digest, size, dest, undefined).pipe(Effect.provide(counted(asked, true)))).toBe("kept")
    }).pipe(Effect.provide(stack)))

  // a copy made here was read again by the next build that found it: 2 GB for a root filesystem's
  // first layer, from disk when the page cache had moved on (6.6 s here)
  // the blob in the store, nothing yet at `dest`, and a place there that counts what it reads on a thread
  const nothingThere = Effect.gen(function*() {
    yield* ContentStore.writeBlob("blob", blob)
    const { dest } = yield* wrongFile
    fs.rmSync(dest)
    const asked: Array<string> = []
    return { dest, asked, placed: place(digest, size, dest, undefined).pipe(Effect.provide(counted(asked, false))) }
  })

  it.scoped("a copy made here is recorded as made: the next place keeps it without reading it", () =>
    Effect.gen(function*() {
      const { dest, asked, placed } = yield* nothingThere
      expect(yield* placed).toBe("copied")
      expect(yield* placed).toBe("kept")
      expect(asked).toEqual([])
      expect(fs.readFileSync(dest).equals(blob)).toBe(true)
      // its mtime was set back past the racy second, which is what makes the record safe
      const stat = fs.lstatSync(dest, { bigint: true })
      expect(stat.ctimeNs - stat.mtimeNs > 1_000_000_000n).toBe(true)
    }).pipe(Effect.provide(stack)))

  it.scoped("bytes written over a copy at once, same size, are seen: the record no longer answers", () =>
    Effect.gen(function*() {
      const { dest, asked, placed } = yield* nothingThere
      expect(yield* placed).toBe("copied")
      // in place (same inode, same size), within the same clock tick as the copy's ctime
      const fd = fs.openSync(dest, "r+")
      fs.writeSync(fd, Buffer.alloc(size, 0x62), 0, size, 0)
      fs.closeSync(fd)
      expect(yield* placed).toBe("copied")
      expect(asked).toEqual([dest])
      expect(fs.readFileSync(dest).equals(blob)).toBe(true)
    }).pipe(Effect.provide(stack)))

  it.scoped("from a local store's file: copied as root (recorded, kept next time unread), linked otherwise", () =>
    Effect.gen(function*() {
      const { dest } = yield* wrongFile
      fs.rmSync(dest)
      const store = NodePath.join(NodePath.dirname(dest), "store")
      const stored = NodePath.join(store, "blobs", "sha256", Digest.hex(digest))
      fs.mkdirSync(NodePath.dirname(stored), { recursive: true })
      fs.writeFileSync(stored, blob, { mode: 0o444 })
      const old = new Date("2024-01-01T00:00:00Z")
      fs.utimesSync(stored, old, old)
      const asked: Array<string> = []
      const placed = place(digest, size, dest, store).pipe(Effect.provide(counted(asked, false)))
      const root = process.getuid?.() === 0
      expect(yield* placed).toBe(root ? "copied" : "linked")
      expect(yield* placed).toBe("kept")
      expect(asked).toEqual([])
      const stat = fs.lstatSync(dest, { bigint: true })
      // a copy is given its blob's time in the store (older than the racy second)
      if (root) expect(stat.mtime.getTime()).toBe(old.getTime())
      expect(fs.readFileSync(dest).equals(blob)).toBe(true)
    }).pipe(Effect.provide(stack)))
})
