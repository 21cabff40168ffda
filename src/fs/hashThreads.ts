/**
 * Files' contents hashed on worker threads: a diff whose files agree in every stat reads and
 * hashes both sides' bytes (a copied root filesystem: gigabytes), which on the event loop would
 * leave the second core idle and the walk waiting. Two workers (see evalWorker.ts), each given
 * a share of a batch by bytes. The threads belong to whoever made them (the stack's `Threads`
 * service), which closes them.
 */
import { CheckLost, type DiffIdTap } from "../internal/diffIdTap.js"
import type * as Digest from "../Digest.js"
import type { Compression } from "../Oci.js"
import { type EvalWorker, evalWorker, type Reply as WorkerReply } from "../internal/evalWorker.js"
import { digestAsGiven, digestOfFile, type FileToHash } from "./contents.js"
import { advising, readaheadAddonPath } from "./readahead.js"

// plain CommonJS, evaluated in the worker: no file to find, bundled or not
const source = `
const { parentPort } = require("node:worker_threads")
const fs = require("node:fs")
const { createHash } = require("node:crypto")
const zlib = require("node:zlib")
const buffer = Buffer.allocUnsafe(1 << 20)
const digestOfFile = (${digestOfFile.toString()})
const digestAsGiven = (${digestAsGiven.toString()})
const digestOf = (path, size, key) => digestAsGiven(fs, createHash, digestOfFile, buffer, { path, size, key })
let willNeed
try {
  willNeed = require(${JSON.stringify(readaheadAddonPath)}).willNeed
} catch {
  // without the addon each file is read when its turn comes, as before
}
const advising = (${advising.toString()})
// a layer's tar, hashed whole and file by file: each chunk comes with the spans of the files it
// holds (sequence number, from, to, whether the file ends there), flat
const sessions = new Map()
const chunk = (m) => {
  let s = sessions.get(m.session)
  if (s === undefined) sessions.set(m.session, s = { tar: createHash("sha256"), file: undefined })
  const bytes = new Uint8Array(m.buffer, 0, m.length)
  s.tar.update(bytes)
  const done = []
  const spans = m.spans
  for (let i = 0; i < spans.length; i += 4) {
    if (s.file === undefined) s.file = createHash("sha256")
    s.file.update(bytes.subarray(spans[i + 1], spans[i + 2]))
    if (spans[i + 3] === 1) {
      done.push(spans[i], "sha256:" + s.file.digest("hex"))
      s.file = undefined
    }
  }
  return done
}
// a gzip blob's diffID as its bytes come: decompressed (on this thread's pool) and hashed here
const unzips = new Map()
const unzip = (m) => {
  let u = unzips.get(m.session)
  if (u === undefined) {
    const made = { hash: createHash("sha256"), stream: zlib.createGunzip({ chunkSize: 1 << 20 }), failure: undefined, pending: new Set() }
    made.stream.on("data", (bytes) => made.hash.update(bytes))
    // a stream that fails never calls back the write it failed in: its writes are answered here
    made.stream.on("error", (error) => {
      made.failure ??= error.message
      for (const id of made.pending) parentPort.postMessage({ id, failure: made.failure })
      made.pending.clear()
    })
    unzips.set(m.session, u = made)
  }
  if (u.failure !== undefined) return parentPort.postMessage({ id: m.id, failure: u.failure })
  u.pending.add(m.id)
  // the stream is done with the bytes once it calls back: the buffer goes back, for the next copy
  u.stream.write(new Uint8Array(m.buffer, 0, m.length), () => {
    if (!u.pending.delete(m.id)) return
    if (u.failure !== undefined) return parentPort.postMessage({ id: m.id, failure: u.failure })
    parentPort.postMessage({ id: m.id, buffer: m.buffer }, [m.buffer])
  })
}
const unzipEnd = (m) => {
  const u = unzips.get(m.session)
  unzips.delete(m.session)
  if (u === undefined) return parentPort.postMessage({ id: m.id, failure: "nothing was given" })
  if (u.failure !== undefined) return parentPort.postMessage({ id: m.id, failure: u.failure })
  u.stream.once("error", (error) => parentPort.postMessage({ id: m.id, failure: error.message }))
  u.stream.once("end", () => parentPort.postMessage({ id: m.id, tar: "sha256:" + u.hash.digest("hex") }))
  u.stream.end()
}
parentPort.on("message", (m) => {
  if (m.op === "ping") return parentPort.postMessage({ id: m.id })
  if (m.op === "unzip") return unzip(m)
  if (m.op === "unzip-end") return unzipEnd(m)
  if (m.op === "unzip-drop") {
    unzips.get(m.session)?.stream.destroy()
    unzips.delete(m.session)
    return parentPort.postMessage({ id: m.id })
  }
  if (m.op === "chunk") {
    const done = chunk(m)
    // the buffer goes back, for the layer's next chunk: kept here, each would be garbage that
    // waits for a collection (this heap is small: tens of MiB of them per thread)
    return parentPort.postMessage({ id: m.id, done, buffer: m.buffer }, [m.buffer])
  }
  if (m.op === "finish") {
    const s = sessions.get(m.session)
    sessions.delete(m.session)
    return parentPort.postMessage({ id: m.id, tar: "sha256:" + (s === undefined ? createHash("sha256") : s.tar).digest("hex") })
  }
  if (m.op === "drop") {
    sessions.delete(m.session)
    return parentPort.postMessage({ id: m.id })
  }
  const advise = willNeed === undefined ? () => {} : advising(m.files, willNeed)
  const digests = m.files.map(({ path, size, key }, i) => {
    advise(i)
    try {
      return digestOf(path, size, key)
    } catch {
      return undefined
    }
  })
  parentPort.postMessage({ id: m.id, digests })
})
`

interface Reply extends WorkerReply {
  readonly digests?: ReadonlyArray<string | undefined>
  readonly done?: ReadonlyArray<number | string>
  readonly tar?: string
  readonly buffer?: ArrayBuffer
  readonly failure?: string
}

/** Chunks of a layer's tar in flight to the thread before the producer waits for it. */
const inFlight = 8

/**
 * Buffers that chunks are copied into for a hash thread, which sends each back once done with it
 * (kept there, each would be garbage waiting for a collection of a small heap: tens of MiB per
 * thread): as many are made as are in flight at once, not one per chunk.
 */
class CopyBuffers {
  private readonly spares: Array<ArrayBuffer> = []
  private made = 0

  /** `bytes` copied into a spare buffer that holds them, or a new one. */
  copy(bytes: Uint8Array): ArrayBuffer {
    const at = this.spares.findIndex((spare) => spare.byteLength >= bytes.length)
    if (at === -1) this.made++
    // a chunk is at most a MiB (the tar's buffers, diff/layer.ts; a download's, registry/pull.ts):
    // a spare of one holds any chunk after it
    const buffer = at === -1 ? new ArrayBuffer(Math.max(bytes.length, 1 << 20)) : this.spares.splice(at, 1)[0]!
    new Uint8Array(buffer).set(bytes)
    return buffer
  }

  /** A buffer back from the thread. */
  back(buffer: ArrayBuffer): void {
    if (this.spares.length < inFlight) this.spares.push(buffer)
  }

  /** Buffers made so far. */
  get count(): number {
    return this.made
  }
}

/**
 * A layer's tar hashed on a hash thread: the whole (the diffID) and each file's contents within
 * it (for the content-hash index), so that the thread that reads the files does no hashing.
 * Chunks are copied over (the tar's own buffers go on to the compressor), or, with `recycle`
 * (nothing else reads them), handed over and given back to it once hashed: copying a layer's
 * every MiB on the event loop cost as much as reading its files (bench tree: 0.5 s of 2). A copy's
 * buffer comes back too, for the next copy.
 */
export class LayerHashing {
  private readonly waiting = new Set<Promise<void>>()
  private readonly files = new Map<number, (digest: string) => void>()
  private failed: Error | undefined
  private nextFile = 0
  private readonly copies = new CopyBuffers()

  constructor(
    private readonly worker: EvalWorker<Reply>,
    private readonly thread: number,
    private readonly session: number,
    private readonly recycle?: (buffer: Buffer) => void
  ) {}

  /** A number for the next file whose bytes the tar will hold; `told` gets its digest once hashed. */
  file(told: (digest: string) => void): number {
    this.files.set(this.nextFile, told)
    return this.nextFile++
  }

  /**
   * The next chunk of the tar, with the spans of files it holds (`[file, from, to, ends (1 or 0)]`,
   * flat). With `recycle`, a chunk that starts its buffer is handed over: its bytes (the whole
   * buffer's) are unreadable here until `recycle` is given the buffer back.
   */
  chunk(bytes: Uint8Array, spans: ReadonlyArray<number>): void {
    if (this.failed !== undefined) return
    const handOver = this.recycle !== undefined && bytes.byteOffset === 0
    const buffer = handOver ? bytes.buffer as ArrayBuffer : this.copies.copy(bytes)
    const message = { op: "chunk", session: this.session, buffer, length: bytes.length, spans }
    const sent: Promise<void> = this.worker.ask(message, [buffer], this.thread)
      .then((reply) => {
        if (reply.buffer !== undefined) {
          if (handOver) this.recycle?.(Buffer.from(reply.buffer))
          else this.copies.back(reply.buffer)
        }
        const done = reply.done ?? []
        for (let i = 0; i < done.length; i += 2) {
          const file = done[i] as number
          this.files.get(file)?.(done[i + 1] as string)
          this.files.delete(file)
        }
      }, (error: Error) => {
        this.failed ??= error
      })
      .finally(() => this.waiting.delete(sent))
    this.waiting.add(sent)
  }

  /** Buffers made for copies so far: as many as were in flight at once, not one per chunk. */
  get copyBuffers(): number {
    return this.copies.count
  }

  /** Resolves once few enough chunks are in flight; rejects when the thread failed. */
  async ready(): Promise<void> {
    while (this.waiting.size >= inFlight && this.failed === undefined) await Promise.race(this.waiting)
    if (this.failed !== undefined) throw this.failed
  }

  /** The tar's digest, once every chunk and file is hashed (and told). */
  async finish(): Promise<Digest.Digest> {
    while (this.waiting.size > 0) await Promise.race(this.waiting)
    if (this.failed !== undefined) throw this.failed
    const reply = await this.worker.ask({ op: "finish", session: this.session }, [], this.thread)
    return reply.tar as Digest.Digest
  }

  /** Forget a layer given up. */
  drop(): void {
    this.worker.ask({ op: "drop", session: this.session }, [], this.thread).catch(() => undefined)
  }
}

/**
 * A gzip blob's diffID taken on a hash thread as the blob arrives (see {@link DiffIdTap}): each
 * chunk is copied over before `write` returns (the caller may reuse it at once), decompressed and
 * hashed there. On the event loop the decompressed stream's callbacks and its hashing took 0.55 s
 * of a 233 MB blob's fetch. A thread that exits fails the check with {@link CheckLost}: that says
 * nothing of the blob.
 */
export class ThreadTap implements DiffIdTap {
  readonly keeps = false
  private readonly waiting = new Set<Promise<void>>()
  private readonly copies = new CopyBuffers()
  // the blob's fault (it does not decompress), or the thread's
  private failure: Error | undefined
  private lost: CheckLost | undefined

  constructor(
    private readonly worker: EvalWorker<Reply>,
    private readonly thread: number,
    private readonly session: number
  ) {}

  private settle(): void {
    if (this.lost !== undefined) throw this.lost
    if (this.failure !== undefined) throw this.failure
  }

  private asked(request: object, transfer: ReadonlyArray<ArrayBuffer> = []): Promise<Reply> {
    return this.worker.ask({ ...request, session: this.session }, transfer, this.thread).then(
      (reply) => {
        if (reply.failure !== undefined) this.failure ??= new Error(reply.failure)
        return reply
      },
      (cause: unknown) => {
        throw (this.lost ??= new CheckLost(cause instanceof Error ? cause.message : String(cause)))
      }
    )
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.settle()
    const buffer = this.copies.copy(chunk)
    const sent: Promise<void> = this.asked({ op: "unzip", buffer, length: chunk.length }, [buffer])
      .then((reply) => {
        if (reply.buffer !== undefined) this.copies.back(reply.buffer)
      }, () => undefined)
      .finally(() => this.waiting.delete(sent))
    this.waiting.add(sent)
    while (this.waiting.size >= inFlight && this.failure === undefined && this.lost === undefined) await Promise.race(this.waiting)
    this.settle()
  }

  /** Buffers made for copies so far: as many as were in flight at once, not one per write. */
  get copyBuffers(): number {
    return this.copies.count
  }

  async end(): Promise<string> {
    while (this.waiting.size > 0) await Promise.race(this.waiting)
    this.settle()
    const reply = await this.asked({ op: "unzip-end" })
    this.settle()
    return reply.tar!
  }

  close(): void {
    this.worker.ask({ op: "unzip-drop", session: this.session }, [], this.thread).catch(() => undefined)
  }
}

/** Contents hashed on two worker threads. */
export interface HashThreads {
  /**
   * The sha256 digest ("sha256:<hex>") of each file, in order; `undefined` for a file that could
   * not be read or whose size is no longer its stat's (the caller reads it itself, and fails as
   * it would have). Rejects only when no thread can answer.
   */
  readonly digestFiles: (files: ReadonlyArray<FileToHash>) => Promise<ReadonlyArray<string | undefined>>
  /**
   * A layer's hashing on a thread; `undefined` when no thread can start (the caller hashes on its
   * own). With `recycle`, chunks are handed over and given back to it (see {@link LayerHashing}).
   */
  readonly layerHashing: (recycle?: (buffer: Buffer) => void) => Promise<LayerHashing | undefined>
  /**
   * A blob's diffID check on a thread, for `compression` gzip; `undefined` for another
   * compression or when no thread can start (the caller checks on its own).
   */
  readonly diffIdTap: (compression: Compression) => Promise<DiffIdTap | undefined>
  /** Threads running now. */
  readonly running: () => number
  /** End both threads as a crash would, without closing (what they were given is lost). */
  readonly kill: () => Promise<void>
  /** Stop both threads. */
  readonly close: () => Promise<void>
}

// what a thread keeps is a session's few hashes: a batch's file list, and the messages, die young.
// V8's default young generation kept 40 MiB committed per thread through a root filesystem's
// build (9 MiB used); a smaller one, 18 MiB
const limits = { maxYoungGenerationSizeMb: 8 }

/**
 * A batch's pieces: the largest files first, each piece up to an eighth of the batch's bytes (at
 * least 1 MiB, at most 32 MiB) or 512 files, for whichever thread is free to take next.
 */
export const piecesOf = (files: ReadonlyArray<{ readonly size: number }>): Array<Array<number>> => {
  const total = files.reduce((sum, f) => sum + f.size, 0)
  const most = Math.max(1 << 20, Math.min(32 << 20, Math.ceil(total / 8)))
  const pieces: Array<Array<number>> = []
  let piece: Array<number> = []
  let bytes = 0
  for (const i of files.map((_, i) => i).sort((a, b) => files[b]!.size - files[a]!.size)) {
    piece.push(i)
    bytes += files[i]!.size
    if (bytes >= most || piece.length >= 512) {
      pieces.push(piece)
      piece = []
      bytes = 0
    }
  }
  if (piece.length > 0) pieces.push(piece)
  return pieces
}

/**
 * Two hash threads; a batch is cut in pieces that each thread takes as it is free. (A fixed share
 * per thread, even by bytes, left one thread idle for seconds at the end of a cold tree while the
 * other was still reading its share: cold files do not read at the same speed.)
 */
export const makeHashThreads = (): HashThreads => {
  const threads = [0, 1].map((n) => evalWorker<Reply>(source, `blobchain hashes ${n + 1}`, { limits }))
  const digestFiles = async (files: ReadonlyArray<FileToHash>): Promise<ReadonlyArray<string | undefined>> => {
    const pieces = piecesOf(files)
    const digests: Array<string | undefined> = files.map(() => undefined)
    let next = 0
    let failed = false
    await Promise.all(threads.map(async (thread) => {
      while (next < pieces.length && !failed) {
        const piece = pieces[next++]!
        // a thread gone fails the batch: the other takes no more
        const reply = await thread.ask({ files: piece.map((i) => files[i]) }).catch((error) => {
          failed = true
          throw error
        })
        piece.forEach((i, k) => (digests[i] = reply.digests?.[k]))
      }
    }))
    return digests
  }
  let sessions = 0
  let turn = 0
  // sessions (layers hashed, blobs checked) made at once take the threads in turn; `undefined`
  // when the thread cannot start
  const nextStarted = async (): Promise<EvalWorker<Reply> | undefined> => {
    const worker = threads[turn++ % threads.length]!
    return worker.ask({ op: "ping" }).then(() => worker, () => undefined)
  }
  const layerHashing = async (recycle?: (buffer: Buffer) => void): Promise<LayerHashing | undefined> => {
    const worker = await nextStarted()
    return worker === undefined ? undefined : new LayerHashing(worker, worker.thread(), sessions++, recycle)
  }
  const diffIdTap = async (compression: Compression): Promise<DiffIdTap | undefined> => {
    if (compression !== "gzip") return undefined
    const worker = await nextStarted()
    return worker === undefined ? undefined : new ThreadTap(worker, worker.thread(), sessions++)
  }
  return {
    digestFiles,
    layerHashing,
    diffIdTap,
    running: () => threads.filter((t) => t.running()).length,
    kill: () => Promise.all(threads.map((t) => t.kill())).then(() => undefined),
    close: () => Promise.all(threads.map((t) => t.close())).then(() => undefined)
  }
}
