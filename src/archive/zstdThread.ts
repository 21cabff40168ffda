/**
 * zstd layers compressed from a worker thread, which also hashes the tar (the diffID). On the
 * main thread, zstd's streaming call blocks whenever its own workers are busy, and the tar's
 * sha256 is a third of the main thread's work: there, they held back the reading of files.
 * The main thread now only reads, hands each tar chunk over (transferred, not copied) and
 * stores what comes back. The bytes are those of the main-thread encoder: zstd's
 * multi-threaded frames depend on the input and the parameters only, not on how the input
 * is cut or on the number of workers.
 *
 * One worker (see evalWorker.ts) per owner (the stack's `Threads` service, which closes it),
 * shared by the layers being made at once: each has a session of its own there. Where no worker
 * thread can start, {@link ZstdThread.compressor} says so and the caller compresses here.
 */
import { createRequire } from "node:module"
import { Transform, type TransformCallback } from "node:stream"
import * as Digest from "../Digest.js"
import { type EvalWorker, evalWorker, type Reply as WorkerReply } from "../internal/evalWorker.js"

const bindingPath = createRequire(import.meta.url).resolve("zstd-napi/binding.js")

// Plain CommonJS, evaluated in the worker. Requests: `data` (a tar chunk: hashed, compressed),
// `end` (the frame finished: the last output and the tar's digest) and `drop` (an abandoned
// layer). Output is gathered in 1 MiB buffers; each reply carries the full ones, transferred,
// and the reply to `end` the last one too, with how much of it is filled.
const source = `
const { parentPort } = require("node:worker_threads")
const { createHash } = require("node:crypto")
const zstd = require(${JSON.stringify(bindingPath)})
const outputSize = 1 << 20
const sessions = new Map()
const open = (m) => {
  const cctx = new zstd.CCtx()
  cctx.setParameter(zstd.CParameter.compressionLevel, m.level)
  cctx.setParameter(zstd.CParameter.checksumFlag, 1)
  cctx.setParameter(zstd.CParameter.nbWorkers, m.workers)
  return { cctx, hash: createHash("sha256"), out: Buffer.allocUnsafeSlow(outputSize), used: 0 }
}
const compress = (s, input, end, full) => {
  const directive = end ? zstd.EndDirective.end : zstd.EndDirective.continue
  let chunk = input
  for (;;) {
    const [left, produced, consumed] = s.cctx.compressStream2(s.out.subarray(s.used), chunk, directive)
    s.used += produced
    if (s.used === outputSize) {
      full.push(s.out.buffer)
      s.out = Buffer.allocUnsafeSlow(outputSize)
      s.used = 0
    }
    chunk = chunk.subarray(consumed)
    if (chunk.length === 0 && (!end || left === 0)) return
  }
}
parentPort.on("message", (m) => {
  const outputs = []
  const transfer = m.buffer === undefined ? [] : [m.buffer]
  let reply
  try {
    if (m.op === "ping") reply = { id: m.id }
    else if (m.op === "drop") {
      sessions.delete(m.session)
      reply = { id: m.id }
    } else {
      let s = sessions.get(m.session)
      if (s === undefined) sessions.set(m.session, s = open(m))
      if (m.op === "data") {
        const input = Buffer.from(m.buffer, 0, m.length)
        s.hash.update(input)
        compress(s, input, false, outputs)
        reply = { id: m.id, outputs, input: m.buffer }
      } else {
        compress(s, Buffer.alloc(0), true, outputs)
        sessions.delete(m.session)
        // the last output, partly filled, ends the list
        outputs.push(s.out.buffer)
        reply = { id: m.id, outputs, lastLength: s.used, diffId: s.hash.digest("hex") }
      }
    }
  } catch (error) {
    sessions.delete(m.session)
    reply = { id: m.id, error: String(error && error.message || error), input: m.buffer }
  }
  parentPort.postMessage(reply, [...transfer, ...outputs])
})
`

interface Reply extends WorkerReply {
  readonly outputs?: ReadonlyArray<ArrayBuffer>
  readonly input?: ArrayBuffer
  /** For `end`: how much of the last output is filled. */
  readonly lastLength?: number
  readonly diffId?: string
  readonly error?: string
}

const failure = (reply: Reply): Error | undefined =>
  reply.error === undefined ? undefined : new Error(`zstd: ${reply.error}`)

/** A zstd-compressing transform whose tar digest is known once it has finished. */
export interface ZstdOffThread extends Transform {
  /** The sha256 of everything written, once the stream has finished. */
  readonly diffId: () => Digest.Digest
}

// tar chunks in the worker's hands at once: enough to keep it busy while files are read
const maxInFlight = 4

/** zstd on a worker thread. */
export interface ZstdThread {
  /**
   * A transform compressing with zstd at `level` with `workers` encoder threads, driven from the
   * worker thread, or `undefined` when no worker thread can start. Given `release`, the caller
   * hands its input buffers over: one that fills its ArrayBuffer wholly is transferred to the
   * worker (not copied) and handed to `release` when it comes back. Any other input is copied.
   */
  readonly compressor: (
    level: number,
    workers: number,
    release?: (buffer: Buffer) => void
  ) => Promise<ZstdOffThread | undefined>
  readonly running: () => boolean
  readonly close: () => Promise<void>
  /** End the thread as a crash would (the layers it serves fail; the next starts a fresh one). */
  readonly kill: () => Promise<void>
}

/** A zstd thread, started on first use. */
export const makeZstdThread = (): ZstdThread => {
  const worker = evalWorker<Reply>(source, "blobchain zstd")
  let sessions = 0
  return {
    compressor: (level, workers, release) => zstdOffThread(worker.ask, worker.thread, ++sessions, level, workers, release),
    running: worker.running,
    close: worker.close,
    kill: worker.kill
  }
}

const zstdOffThread = async (
  ask: EvalWorker<Reply>["ask"],
  current: EvalWorker<Reply>["thread"],
  session: number,
  level: number,
  workers: number,
  release?: (buffer: Buffer) => void
): Promise<ZstdOffThread | undefined> => {
  try {
    await ask({ op: "ping" })
  } catch {
    return undefined
  }
  // the session lives in this thread: if it exits, the layer fails (ThreadLost) instead of a
  // fresh thread going on from the middle of the tar
  const thread = current()
  let inFlight = 0
  let resumeWrites: (() => void) | undefined
  let digest: Digest.Digest | undefined
  let ended = false

  const stream = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      const whole = release !== undefined && chunk.buffer instanceof ArrayBuffer && chunk.byteOffset === 0 &&
        chunk.buffer.byteLength === chunk.length
      const buffer: ArrayBuffer = whole
        ? (chunk.buffer as ArrayBuffer)
        : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length).slice().buffer
      inFlight++
      ask({ op: "data", session, level, workers, buffer, length: chunk.length }, [buffer], thread).then((reply) => {
        inFlight--
        const error = failure(reply)
        if (error !== undefined) return stream.destroy(error)
        for (const output of reply.outputs ?? []) stream.push(Buffer.from(output))
        if (whole && reply.input !== undefined) release!(Buffer.from(reply.input))
        if (resumeWrites !== undefined && inFlight < maxInFlight) {
          const resume = resumeWrites
          resumeWrites = undefined
          resume()
        }
      }, (error: unknown) => stream.destroy(error instanceof Error ? error : new Error(String(error))))
      if (inFlight < maxInFlight) callback()
      else resumeWrites = () => callback()
    },
    flush(callback: TransformCallback) {
      // asked after every chunk: the worker answers in order, so this reply comes last
      ask({ op: "end", session, level, workers }, [], thread).then((reply) => {
        ended = true
        const error = failure(reply)
        if (error !== undefined) return callback(error)
        const outputs = reply.outputs ?? []
        outputs.forEach((output, i) => {
          const bytes = i === outputs.length - 1 ? Buffer.from(output, 0, reply.lastLength ?? 0) : Buffer.from(output)
          if (bytes.length > 0) stream.push(bytes)
        })
        digest = Digest.fromHex("sha256", reply.diffId ?? "")
        callback()
      }, (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))))
    },
    destroy(error: Error | null, callback: (error: Error | null) => void) {
      // an abandoned layer: its encoder in the worker is let go
      if (!ended) ask({ op: "drop", session }, [], thread).catch(() => undefined)
      callback(error)
    }
  })
  return Object.assign(stream, {
    diffId: (): Digest.Digest => {
      if (digest === undefined) throw new Error("the zstd stream has not finished")
      return digest
    }
  })
}
