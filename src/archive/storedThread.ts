/**
 * The incompressible-chunk test (stored.ts) on a worker thread. The main thread reads files,
 * hashes and writes; scanning a chunk of random bytes there would hold back the whole pipeline
 * while the deflate threads wait. One worker (see evalWorker.ts), given the classifier's own
 * source, owned and closed by whoever made it (the stack's `Threads` service).
 */
import { evalWorker, type Reply as WorkerReply } from "../internal/evalWorker.js"
import { makeClassifier } from "./stored.js"

// plain CommonJS, evaluated in the worker: no file to find, bundled or not. A request's buffer
// holds the dictionary then the chunk; it is transferred both ways, so no copy is left to the GC.
const source = `
const { parentPort } = require("node:worker_threads")
const { isIncompressible } = (${makeClassifier.toString()})()
parentPort.on("message", (m) => {
  const bytes = new Uint8Array(m.buffer, 0, m.length)
  let reply
  try {
    reply = { id: m.id, stored: isIncompressible(bytes.subarray(m.split), bytes.subarray(0, m.split)), buffer: m.buffer }
  } catch (error) {
    reply = { id: m.id, error: String(error), buffer: m.buffer }
  }
  parentPort.postMessage(reply, [m.buffer])
})
`

interface Reply extends WorkerReply {
  readonly stored?: boolean
  readonly error?: string
  readonly buffer: ArrayBuffer
}

// request buffers: a dictionary and a chunk of the usual sizes fit; a few go round
const spareSize = 32 * 1024 + (1 << 20)
const maxSpares = 8

/** The stored-block test on a worker thread. */
export interface StoredThread {
  /**
   * Whether `chunk` (after `dictionary`) is incompressible, decided on the worker thread. Both
   * are copied at once: the caller may reuse its buffers as soon as this returns.
   */
  readonly isIncompressible: (chunk: Uint8Array, dictionary: Uint8Array | undefined) => Promise<boolean>
  readonly running: () => boolean
  readonly close: () => Promise<void>
}

/** A stored-block test thread, started on first use. */
export const makeStoredThread = (): StoredThread => {
  const spares: Array<ArrayBuffer> = []
  const worker = evalWorker<Reply>(source, "blobchain stored-block test", {
    onReply: (reply) => {
      if (spares.length < maxSpares && reply.buffer.byteLength === spareSize) spares.push(reply.buffer)
    }
  })
  const isIncompressible = (chunk: Uint8Array, dictionary: Uint8Array | undefined): Promise<boolean> => {
    const split = dictionary?.length ?? 0
    const length = split + chunk.length
    const buffer = length <= spareSize ? spares.pop() ?? new ArrayBuffer(spareSize) : new ArrayBuffer(length)
    const bytes = new Uint8Array(buffer, 0, length)
    if (dictionary !== undefined) bytes.set(dictionary)
    bytes.set(chunk, split)
    return worker.ask({ buffer, length, split }, [buffer]).then((reply) => {
      if (reply.stored === undefined) throw new Error(`testing a chunk for stored blocks: ${reply.error ?? "no answer"}`)
      return reply.stored
    })
  }
  return { isIncompressible, running: worker.running, close: worker.close }
}
