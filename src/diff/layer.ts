/**
 * The uncompressed layer as a byte source: the changes between two trees encoded as tar,
 * in ~1 MiB buffers, hashed as they are produced (that hash is the diffID).
 */
import { createHash, type Hash } from "node:crypto"
import * as fs from "node:fs"
import { setImmediate as yieldToEventLoop } from "node:timers/promises"
import type { IndexRecord, StatKey } from "../ContentIndex.js"
import type { ChangedNames } from "../Differ.js"
import type { Hasher } from "../Digest.js"
import { major, minor } from "../internal/posix.js"
import * as Xattr from "../fs/xattr.js"
import { Contents, type DigestFiles, now } from "../fs/contents.js"
import type { LayerHashing } from "../fs/hashThreads.js"
import { layerChanges, type Walk } from "../fs/overlayChanges.js"
import * as Tar from "../archive/tar.js"
import type { Node, Tree } from "../fs/tree.js"

/** Size of the buffers handed downstream. */
export const chunkSize = 1 << 20

/** Where producing the layer failed, for the differ's error. */
export class LayerFault {
  constructor(readonly step: string, readonly path: string, readonly cause: unknown) {}
}

/** Options of the tar encoding. */
export interface LayerOptions {
  readonly sourceDateEpoch?: number
  /** `full` walks both trees even where the overlay fast path applies (it must give the same bytes). */
  readonly walk?: Walk
  /** The names at which the trees may differ, when known (see `DiffOptions.changed`). */
  readonly changed?: ChangedNames
  /** What is known of files' contents, and keeps what the layer reads (a fresh one by default). */
  readonly contents?: Contents
  /** The digests the content-hash index holds for `keys`, in their order (none by default). */
  readonly lookup?: (keys: ReadonlyArray<StatKey>) => Promise<ReadonlyArray<string | undefined>>
  /** Keeps digests read so far in the content-hash index, a batch at a time (the caller keeps the rest). */
  readonly record?: (records: ReadonlyArray<IndexRecord>) => Promise<void>
  /** Told of each entry no layer can hold (a socket), left out. */
  readonly onSkipped?: (path: string) => void
  /** Hashes files to be compared ahead of the walk, on other threads (none by default: read when compared). */
  readonly digestFiles?: DigestFiles
  /**
   * Hashes the tar and each file's contents in it on another thread, which gives the tar's
   * digest; the `hash` given still sees every byte (give one that hashes nothing, or counts).
   * None by default: both are hashed here.
   */
  readonly hashing?: LayerHashing
}

/** Digests read that are recorded as the layer goes: what waits in memory stays this small. */
export const recordEvery = 8192

/**
 * Spare chunk buffers handed back by the consumer once it is done with them. Each buffer is
 * external memory to V8, and allocating one per MiB of layer drives a full GC every few dozen MiB.
 */
export class BufferPool {
  private readonly free: Array<Buffer> = []
  constructor(private readonly keep = 16) {}
  acquire(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(chunkSize)
  }
  /** Give back a whole chunk buffer nothing refers to any more. */
  release(buffer: Buffer): void {
    if (buffer.length === chunkSize && buffer.byteOffset === 0 && this.free.length < this.keep) this.free.push(buffer)
  }
}

// Fills fixed-size buffers: headers are copied in, file contents are read straight into them.
class Chunker {
  buffer: Buffer
  offset = 0
  readonly sealed: Array<Buffer> = []
  /** The files' spans in the buffer, for a hashing thread (see LayerHashing.chunk). */
  spans: Array<number> = []
  constructor(readonly hash: Hasher, readonly pool: BufferPool, readonly hashing?: LayerHashing) {
    this.buffer = pool.acquire()
  }

  push(bytes: Uint8Array): void {
    let from = 0
    while (from < bytes.length) {
      const n = Math.min(bytes.length - from, chunkSize - this.offset)
      this.buffer.set(bytes.subarray(from, from + n), this.offset)
      this.offset += n
      from += n
      if (this.offset === chunkSize) this.seal()
    }
  }

  zeros(count: number): void {
    let left = count
    while (left > 0) {
      const n = Math.min(left, chunkSize - this.offset)
      this.buffer.fill(0, this.offset, this.offset + n)
      this.offset += n
      left -= n
      if (this.offset === chunkSize) this.seal()
    }
  }

  seal(): void {
    if (this.offset === 0) return
    const done = this.offset === chunkSize ? this.buffer : this.buffer.subarray(0, this.offset)
    this.hash.update(done)
    if (this.hashing !== undefined) {
      this.hashing.chunk(done, this.spans)
      this.spans = []
    }
    this.sealed.push(done)
    this.buffer = this.pool.acquire()
    this.offset = 0
  }

  take(): Array<Buffer> {
    return this.sealed.splice(0, this.sealed.length)
  }
}

const nanosPerSecond = 1_000_000_000n

const seconds = (nanos: bigint): number =>
  Number(nanos >= 0n ? nanos / nanosPerSecond : (nanos - nanosPerSecond + 1n) / nanosPerSecond)


const whiteoutName = (path: string, marker: string): string => {
  const slash = path.lastIndexOf("/")
  return `${path.slice(0, slash + 1)}${marker}${path.slice(slash + 1)}`
}

/**
 * The layer tar of `lower` → `upper`. Synchronous file reads in ~1 MiB batches are much faster
 * than async ones for many small files; the generator yields a buffer after each batch.
 */
export async function* layerTar(
  lower: Tree,
  upper: Tree,
  options: LayerOptions,
  hash: Hasher,
  pool: BufferPool = new BufferPool(0)
): AsyncGenerator<Buffer> {
  const out = new Chunker(hash, pool, options.hashing)
  const firstName = new Map<string, string>()
  const clamp = (mtime: number): number =>
    options.sourceDateEpoch !== undefined && mtime > options.sourceDateEpoch ? options.sourceDateEpoch : mtime
  let step = "walk"
  let current = ""
  const marker = (path: string, name: string): Tar.Header => ({
    name: whiteoutName(path, name),
    type: Tar.TypeFlag.file,
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0
  })
  try {
    const contents = options.contents ?? new Contents()
    // what was read goes to the index as the walk goes, whatever the walk yields: a diff of two
    // copies of a tree yields little but compares (reads) every file
    const recordRead = async () => {
      if (options.record === undefined || contents.readCount < recordEvery) return
      step = "index"
      await options.record(contents.takeRead())
    }
    for (const change of layerChanges(lower, upper, options.walk, options.changed, contents)) {
      switch (change._tag) {
        case "Skipped":
          options.onSkipped?.(change.path)
          continue
        case "Tick":
          yield* out.take()
          await recordRead()
          await yieldToEventLoop()
          continue
        case "Lookup":
          if (options.lookup !== undefined) {
            step = "index"
            const keys = change.files.map((f) => f.key)
            contents.provide(keys, await options.lookup(keys))
          }
          if (options.digestFiles !== undefined) {
            step = "read"
            await contents.readAhead(change.files, options.digestFiles)
          }
          await recordRead()
          continue
        case "Whiteout":
          current = change.path
          out.push(Tar.encode(marker(change.path, ".wh.")))
          break
        case "Opaque":
          current = change.path
          out.push(Tar.encode(marker(`${change.path}/`, ".wh..wh..opq")))
          break
        case "Entry": {
          current = change.path
          step = "walk"
          const node = change.node
          const header = headerOf(change.path, node, clamp, firstName)
          if (header === undefined) {
            options.onSkipped?.(change.path)
            continue
          }
          out.push(Tar.encode(header))
          if (header.type === Tar.TypeFlag.file && header.size > 0) {
            step = "read"
            const readAtNs = now()
            const stat = node.stat
            if (options.hashing !== undefined) {
              yield* copyFile(node, header.size, out, options.hashing.file((digest) => contents.read(stat, digest, readAtNs)))
            } else {
              const digest = createHash("sha256")
              yield* copyFile(node, header.size, out, digest)
              contents.read(stat, `sha256:${digest.digest("hex")}`, readAtNs)
            }
          }
          break
        }
      }
      await recordRead()
      yield* out.take()
    }
    step = "end"
    out.push(Tar.endOfArchive())
    out.seal()
    yield* out.take()
  } catch (cause) {
    throw new LayerFault(step, current, cause)
  }
}

const headerOf = (
  path: string,
  node: Node,
  clamp: (mtime: number) => number,
  firstName: Map<string, string>
): Tar.Header | undefined => {
  const s = node.stat
  const xattrs = Xattr.list(node.path)
  const base = {
    name: path,
    mode: Number(s.mode & 0o7777n),
    uid: Number(s.uid),
    gid: Number(s.gid),
    size: 0,
    mtime: clamp(seconds(s.mtimeNs)),
    ...(xattrs.length === 0 ? {} : { xattrs })
  }
  if (s.isFile()) {
    if (s.nlink > 1n) {
      const key = `${s.dev}:${s.ino}`
      const first = firstName.get(key)
      if (first !== undefined) return { ...base, type: Tar.TypeFlag.link, linkname: first }
      firstName.set(key, path)
    }
    return { ...base, type: Tar.TypeFlag.file, size: Number(s.size) }
  }
  if (s.isDirectory()) return { ...base, name: path === "" ? "./" : `${path}/`, type: Tar.TypeFlag.directory }
  if (s.isSymbolicLink()) return { ...base, type: Tar.TypeFlag.symlink, linkname: fs.readlinkSync(node.path) }
  if (s.isFIFO()) return { ...base, type: Tar.TypeFlag.fifo }
  if (s.isCharacterDevice() || s.isBlockDevice()) {
    return {
      ...base,
      type: s.isCharacterDevice() ? Tar.TypeFlag.char : Tar.TypeFlag.block,
      devmajor: Number(major(s.rdev)),
      devminor: Number(minor(s.rdev))
    }
  }
  // sockets and anything else a tar cannot hold
  return undefined
}

// Exactly `size` bytes, as the header promised; a file that shrank meanwhile is an error.
// `digest` hashes the bytes here, or they are given to the chunker's hashing thread as file `digest`.
function* copyFile(node: Node, size: number, out: Chunker, digest: Hash | number): Generator<Buffer> {
  const fd = fs.openSync(node.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  try {
    let left = size
    while (left > 0) {
      const n = fs.readSync(fd, out.buffer, out.offset, Math.min(left, chunkSize - out.offset), null)
      if (n === 0) throw new Error(`file shrank while being read (${size - left} of ${size} bytes)`)
      if (typeof digest === "number") out.spans.push(digest, out.offset, out.offset + n, left === n ? 1 : 0)
      else digest.update(out.buffer.subarray(out.offset, out.offset + n))
      out.offset += n
      left -= n
      if (out.offset === chunkSize) {
        out.seal()
        yield* out.take()
      }
    }
  } finally {
    fs.closeSync(fd)
  }
  out.zeros(Tar.padding(size))
}
