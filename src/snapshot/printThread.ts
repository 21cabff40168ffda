/**
 * Fingerprints taken on a worker thread, so that a build stats its directories two at a time:
 * one here, the next ones there. Most of a fingerprint is lstat calls, which a second core does
 * as fast as the first. One worker per process, started on first use and given the
 * fingerprinter's own source; it keeps the process alive only while a print is awaited.
 */
import { Worker } from "node:worker_threads"
import { makeFingerprinter, type Print } from "./fingerprint.js"

// plain CommonJS, evaluated in the worker: no file to find, bundled or not
const source = `
const { parentPort } = require("node:worker_threads")
const { fingerprintOf } = (${makeFingerprinter.toString()})(require("node:fs"), require("node:crypto").createHash)
parentPort.on("message", (m) => {
  let reply
  try {
    reply = { id: m.id, print: fingerprintOf(m.dir) }
  } catch (error) {
    reply = { id: m.id, error: { message: String(error && error.message || error), path: error && error.path } }
  }
  parentPort.postMessage(reply)
})
`

interface Reply {
  readonly id: number
  readonly print?: Print
  readonly error?: { readonly message: string; readonly path?: string }
}

interface Waiter {
  readonly resolve: (print: Print) => void
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
  const w = new Worker(source, { eval: true, name: "blobchain fingerprints" })
  w.unref()
  w.on("message", (reply: Reply) => {
    const waiter = waiting.get(reply.id)
    if (waiter === undefined) return
    waiting.delete(reply.id)
    if (waiting.size === 0) w.unref()
    if (reply.print !== undefined) return waiter.resolve(reply.print)
    // the file system's error as this thread would have thrown it: message and path
    const error = new Error(reply.error?.message ?? "no answer")
    if (reply.error?.path !== undefined) Object.assign(error, { path: reply.error.path })
    waiter.reject(error)
  })
  w.on("error", (error) => failAll(error))
  w.on("exit", (code) => failAll(new Error(`the fingerprint thread exited (${code})`)))
  worker = w
  return w
}

/** The fingerprint of the tree at `dir`, taken on the worker thread (prints queue there in order). */
export const fingerprintOffThread = (dir: string): Promise<Print> =>
  new Promise((resolve, reject) => {
    const w = started()
    const id = nextId++
    waiting.set(id, { resolve, reject })
    w.ref()
    w.postMessage({ id, dir })
  })
