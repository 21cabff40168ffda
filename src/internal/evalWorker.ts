/**
 * A worker thread running a script given as source text (so no worker file has to be found,
 * bundled or not) that answers each request with a reply carrying the request's `id`. Started on
 * first use; it keeps the process alive only while an answer is awaited. A worker that fails or
 * exits fails what is awaited, and the next request starts a fresh one. Its owner closes it (a
 * scope's finaliser): the thread is stopped and nothing starts one again.
 */
import { type ResourceLimits, Worker } from "node:worker_threads"
import { holdYoungGeneration } from "./resident.js"

/** What a worker's script posts back: at least the id of the request it answers. */
export interface Reply {
  readonly id: number
}

interface Waiter<R> {
  readonly resolve: (reply: R) => void
  readonly reject: (error: Error) => void
}

/** A worker thread's handle (see {@link evalWorker}). */
export interface EvalWorker<R extends Reply> {
  /**
   * Send a request (an object the script gets with an `id` added) and resolve with its reply.
   * Failing to start the worker, or a closed one, is a rejection, never a throw.
   */
  readonly ask: (request: object, transfer?: ReadonlyArray<ArrayBuffer>, thread?: number) => Promise<R>
  /**
   * Which thread answers now: a number each started thread gets, so that a caller keeping state
   * in one (a session) can ask that thread alone (the `thread` of {@link ask}) and learn it is gone.
   */
  readonly thread: () => number
  /** End the running thread as a crash would, without closing: what is awaited fails. */
  readonly kill: () => Promise<void>
  /** Stop the thread (if one runs) and fail what is awaited; later requests are refused. */
  readonly close: () => Promise<void>
  /** Whether a thread runs now. */
  readonly running: () => boolean
}

/** How a worker thread is run (see {@link evalWorker}). */
export interface Options<R extends Reply> {
  /** Sees every reply first, awaited or not (to take back transferred buffers). */
  readonly onReply?: (reply: R) => void
  /** The thread's heap's limits. */
  readonly limits?: ResourceLimits
  /**
   * Stop the thread once nothing is awaited, and start a fresh one for the next request: for a
   * thread whose heap a request grows (a root filesystem's walk) and that is asked seldom, its
   * memory given back is worth a start-up (tens of milliseconds) per request.
   */
  readonly exitWhenIdle?: boolean
}

/** A worker thread for `source`, started on first request. */
export const evalWorker = <R extends Reply>(source: string, name: string, options: Options<R> = {}): EvalWorker<R> => {
  const { exitWhenIdle = false, limits, onReply } = options
  let worker: Worker | undefined
  let closed = false
  let nextId = 0
  let threads = 0
  const waiting = new Map<number, Waiter<R>>()

  const failAll = (error: Error): void => {
    worker = undefined
    // a copy: a waiter's rejection may send the next request, to a fresh thread
    const failed = [...waiting.values()]
    waiting.clear()
    for (const waiter of failed) waiter.reject(error)
  }

  // the thread stopped by its owner or for being idle: what it answers no more is not its failure
  const retire = (w: Worker): Promise<number> => {
    if (worker === w) worker = undefined
    return w.terminate()
  }

  const started = (): Worker => {
    if (worker !== undefined) return worker
    const w = new Worker(source, { eval: true, name, ...(limits === undefined ? {} : { resourceLimits: limits }) })
    threads++
    w.unref()
    // its isolate's start put V8's young-generation growth back (see resident.ts)
    w.once("online", holdYoungGeneration)
    w.on("message", (reply: R) => {
      onReply?.(reply)
      const waiter = waiting.get(reply.id)
      if (waiter === undefined) return
      waiting.delete(reply.id)
      if (waiting.size === 0) {
        w.unref()
        if (exitWhenIdle) void retire(w)
      }
      waiter.resolve(reply)
    })
    // only the running thread's end fails what is awaited: one retired has nothing awaited
    w.on("error", (error) => worker === w && failAll(error))
    w.on("exit", (code) => worker === w && failAll(new Error(`the thread "${name}" exited (${code})`)))
    worker = w
    return w
  }

  const ask = (request: object, transfer: ReadonlyArray<ArrayBuffer> = [], thread?: number) =>
    new Promise<R>((resolve, reject) => {
      if (closed) return reject(new Error(`the thread "${name}" is closed`))
      // the thread that kept the caller's state has gone: a fresh one would answer from nothing
      if (thread !== undefined && (worker === undefined || thread !== threads)) {
        return reject(new ThreadLost({ name }))
      }
      const w = started()
      const id = nextId++
      waiting.set(id, { resolve, reject })
      w.ref()
      w.postMessage({ ...request, id }, [...transfer])
    })

  const close = async (): Promise<void> => {
    closed = true
    const w = worker
    if (w === undefined) return
    failAll(new Error(`the thread "${name}" was closed`))
    await retire(w)
  }

  const kill = async (): Promise<void> => {
    const w = worker
    if (w !== undefined) await w.terminate()
  }

  return { ask, close, running: () => worker !== undefined, thread: () => threads, kill }
}

/** The thread that held a caller's state exited; what it held is lost. */
export class ThreadLost extends Error {
  constructor(readonly options: { readonly name: string }) {
    super(`the thread "${options.name}" exited: the work it held is lost`)
    this.name = "ThreadLost"
  }
}
