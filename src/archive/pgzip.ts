/**
 * Parallel gzip in one gzip member, as pigz writes it: fixed 1 MiB chunks raw-deflated at once on
 * the thread pool, each primed with the previous chunk's last 32 KiB, joined by sync flushes.
 * Chunks that deflate would store anyway (see stored.ts) are written as stored blocks directly.
 */
import * as os from "node:os"
import { Transform, type TransformCallback } from "node:stream"
import * as zlib from "node:zlib"
import { crc32Combine } from "./crc32.js"
import { compressibleAtFirstSight, isIncompressible, storedBlocks } from "./stored.js"

/**
 * The chunk size. The output is a function of the input, the level, this size, the test for
 * incompressible chunks and zlib's deflate (the one Node ships, at memLevel 9); never of the
 * number of chunks in flight or of how the input is split.
 */
export const gzipChunkSize = 1 << 20

// deflate's window: the most a match can reach back, so the dictionary each chunk needs
const windowSize = 32 * 1024

// zlib's output buffer per thread-pool step: small enough that a well-compressing chunk does
// not allocate a whole MiB (buffers are external memory, and their churn drives V8's full GCs)
const outputChunk = 256 * 1024

/** Options of {@link parallelGzip}. */
export interface ParallelGzipOptions {
  readonly level: number
  /** Chunks deflating or waiting to be written at once (memory is about 3 MiB each). */
  readonly concurrency?: number
  /** Called with each input buffer once nothing here refers to it any more (for reuse). */
  readonly release?: (buffer: Buffer) => void
  /**
   * The stored-block test on another thread (see storedThread.ts); without it, or when it
   * fails, the test runs here, with the same answer.
   */
  readonly isIncompressible?: (chunk: Uint8Array, dictionary: Uint8Array | undefined) => Promise<boolean>
}

/**
 * Chunks in flight by default: three per core keeps every core deflating while the main thread
 * reads, hashes and writes (measured on 2 cores: 2 in flight 5.3 s, 4 4.3 s, 6 4.1 s, 12 4.1 s
 * for the 434 MB benchmark tree). Memory stays bounded by about 2 MiB a chunk.
 */
export const defaultConcurrency = (): number => Math.max(2, 3 * os.availableParallelism())

// RFC 1952 header: no name, mtime 0, OS 3 (Unix) on every platform, so bytes never depend on where they were made
const header = (level: number): Buffer =>
  Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level === 9 ? 2 : level <= 1 ? 4 : 0, 3])

type Outcome = { readonly ok: true; readonly bytes: ReadonlyArray<Buffer> } | { readonly ok: false; readonly error: Error }

interface Job {
  readonly chunk: Buffer
  readonly outcome: Promise<Outcome>
  readonly crc: number
  readonly length: number
}

const deflate = (chunk: Buffer, level: number, dictionary: Buffer | undefined, last: boolean): Promise<Outcome> =>
  new Promise((resolve) => {
    const options: zlib.ZlibOptions = {
      level,
      // the largest hash table: about a tenth faster than the default 8, for a 0.1 % larger output
      memLevel: 9,
      chunkSize: outputChunk,
      finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH
    }
    try {
      // a stream rather than zlib.deflateRaw: its pieces are written as they are, not concatenated
      const stream = zlib.createDeflateRaw(dictionary === undefined ? options : { ...options, dictionary })
      const pieces: Array<Buffer> = []
      stream.on("data", (piece: Buffer) => pieces.push(piece))
      stream.on("error", (error) => resolve({ ok: false, error }))
      stream.on("end", () => resolve({ ok: true, bytes: pieces }))
      stream.end(chunk)
    } catch (error) {
      // bad options throw at once; an outcome, so a job nobody awaits any more never rejects unhandled
      resolve({ ok: false, error: error instanceof Error ? error : new Error(String(error)) })
    }
  })

/** A gzip-compressing transform that deflates up to `concurrency` chunks at once. */
export const parallelGzip = (options: ParallelGzipOptions): Transform => {
  const level = options.level
  const concurrency = Math.max(1, options.concurrency ?? defaultConcurrency())
  const offThread = options.isIncompressible ?? ((chunk: Uint8Array, dictionary: Uint8Array | undefined) =>
    Promise.resolve().then(() => isIncompressible(chunk, dictionary)))
  const queue: Array<Job> = []
  let current: Buffer | undefined
  let filled = 0
  let tail: Buffer | undefined
  let crc = 0
  let total = 0
  let started = false

  return new Transform({
    // the readable side holds a few chunks' output; the writable side one tar buffer
    readableHighWaterMark: 4 * gzipChunkSize,
    writableHighWaterMark: gzipChunkSize,
    transform(input: Buffer, _encoding, callback: TransformCallback) {
      take(this, input).then(() => callback(), callback)
    },
    flush(callback: TransformCallback) {
      finish(this).then(() => callback(), callback)
    }
  })

  // Write the oldest chunk's deflate output, in order, and fold its CRC in.
  async function emitOldest(stream: Transform): Promise<void> {
    const job = queue.shift()
    if (job === undefined) return
    const outcome = await job.outcome
    if (!outcome.ok) throw outcome.error
    for (const piece of outcome.bytes) stream.push(piece)
    // only a chunk that was a whole input buffer goes back; copies and views stay ours
    if (job.chunk.length === gzipChunkSize && job.chunk.byteOffset === 0) options.release?.(job.chunk)
    crc = crc32Combine(crc, job.crc, job.length)
    total += job.length
  }

  async function dispatch(stream: Transform, chunk: Buffer, last: boolean): Promise<void> {
    if (!started) {
      started = true
      stream.push(header(level))
    }
    while (queue.length >= concurrency) await emitOldest(stream)
    // a chunk deflate would only store is stored here, without the thread pool's long search;
    // whether it is one is worked out on another thread, unless its first block says no
    const dictionary = tail
    const outcome = level === 0 || compressibleAtFirstSight(chunk)
      ? deflate(chunk, level, dictionary, last)
      : offThread(chunk, dictionary)
        // no worker thread to be had (or it died): the same test here, with the same answer
        .catch(() => isIncompressible(chunk, dictionary))
        .then(
          (stored): Outcome | Promise<Outcome> =>
            stored ? { ok: true, bytes: [storedBlocks(chunk, last)] } : deflate(chunk, level, dictionary, last),
          (error: Error): Outcome => ({ ok: false, error })
        )
    queue.push({ chunk, outcome, crc: zlib.crc32(chunk), length: chunk.length })
    // the next chunk's dictionary, copied: this chunk's buffer may be reused once it is deflated
    tail = Buffer.from(chunk.subarray(Math.max(0, chunk.length - windowSize)))
  }

  // A chunk goes out only once a byte beyond it arrives, so the last one can finish the stream.
  async function take(stream: Transform, input: Buffer): Promise<void> {
    let at = 0
    while (at < input.length) {
      if (current !== undefined && filled === gzipChunkSize) {
        await dispatch(stream, current, false)
        current = undefined
      }
      if (current === undefined && input.length - at >= gzipChunkSize) {
        // a whole chunk in the input: deflate it from there, no copy
        current = input.subarray(at, at + gzipChunkSize)
        filled = gzipChunkSize
        at += gzipChunkSize
        continue
      }
      if (current === undefined) {
        current = Buffer.allocUnsafe(gzipChunkSize)
        filled = 0
      }
      const n = Math.min(gzipChunkSize - filled, input.length - at)
      input.copy(current, filled, at, at + n)
      filled += n
      at += n
    }
  }

  async function finish(stream: Transform): Promise<void> {
    await dispatch(stream, current === undefined ? Buffer.alloc(0) : current.subarray(0, filled), true)
    current = undefined
    while (queue.length > 0) await emitOldest(stream)
    const trailer = Buffer.allocUnsafe(8)
    trailer.writeUInt32LE(crc >>> 0, 0)
    trailer.writeUInt32LE(total % 2 ** 32, 4)
    stream.push(trailer)
  }
}
