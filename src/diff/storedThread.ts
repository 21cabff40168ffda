/**
 * The incompressible-chunk test (stored.ts) on a worker thread. The main thread reads files,
 * hashes and writes; scanning a chunk of random bytes there would hold back the whole pipeline
 * while the deflate threads wait. One worker per process, started on first use and given the
 * classifier's own source; it keeps the process alive only while a test is awaited.
 */
import { Worker } from "node:worker_threads"
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

interface Reply {
  readonly id: number
  readonly stored?: boolean
  readonly error?: string
  readonly buffer: ArrayBuffer
}

interface Waiter {
  readonly resolve: (stored: boolean) => void
  readonly reject: (error: Error) => void
}

let worker: Worker | undefined
let nextId = 0
const waiting = new Map<number, Waiter>()

const failAll = (error: Error): void => {
  worker = undefined
  for (const waiter of waiting.values()) waiter.reject(error)
  waiting.clear()
}

const started = (): Worker => {
  if (worker !== undefined) return worker
  const w = new Worker(source, { eval: true, name: "blobchain stored-block test" })
  w.unref()
  w.on("message", (reply: Reply) => {
    const waiter = waiting.get(reply.id)
    if (waiter === undefined) return
    waiting.delete(reply.id)
    if (waiting.size === 0) w.unref()
    if (spares.length < maxSpares && reply.buffer.byteLength === spareSize) spares.push(reply.buffer)
    if (reply.stored !== undefined) waiter.resolve(reply.stored)
    else waiter.reject(new Error(`testing a chunk for stored blocks: ${reply.error ?? "no answer"}`))
  })
  w.on("error", (error) => failAll(error))
  w.on("exit", (code) => failAll(new Error(`the stored-block test's thread exited (${code})`)))
  worker = w
  return w
}

// request buffers: a dictionary and a chunk of the usual sizes fit; a few go round
const spareSize = 32 * 1024 + (1 << 20)
const maxSpares = 8
const spares: Array<ArrayBuffer> = []

/**
 * Whether `chunk` (after `dictionary`) is incompressible, decided on the worker thread. Both are
 * copied at once: the caller may reuse its buffers as soon as this returns.
 */
export const isIncompressibleOffThread = (chunk: Uint8Array, dictionary: Uint8Array | undefined): Promise<boolean> =>
  new Promise((resolve, reject) => {
    const w = started()
    const id = nextId++
    const split = dictionary?.length ?? 0
    const length = split + chunk.length
    const buffer = length <= spareSize ? spares.pop() ?? new ArrayBuffer(spareSize) : new ArrayBuffer(length)
    const bytes = new Uint8Array(buffer, 0, length)
    if (dictionary !== undefined) bytes.set(dictionary)
    bytes.set(chunk, split)
    waiting.set(id, { resolve, reject })
    w.ref()
    w.postMessage({ id, buffer, length, split }, [buffer])
  })
