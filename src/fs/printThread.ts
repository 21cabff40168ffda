/**
 * Fingerprints taken on worker threads, so that the event loop stays free and a build stats its
 * directories several at a time. Most of a fingerprint is system calls, which every core makes as
 * fast as the first. Workers (see evalWorker.ts), each given the fingerprinter's own source and
 * the name order's. The threads belong to whoever made them (the stack's `Threads` service),
 * which closes them.
 */
import * as os from "node:os"
import { evalWorker, type Reply as WorkerReply } from "../internal/evalWorker.js"
import { compareNames } from "./tree.js"
import { walkAddonPath } from "./walk.js"
import { addonPath, isCarried } from "./xattr.js"
import { makeFingerprinter, type Print, statSeedOf, type TreeDigests } from "./fingerprint.js"
import { packBytes, packLines, PrintLines, restartEvery, type PackedLines } from "./printLines.js"

// plain CommonJS, evaluated in the worker: no file to find, bundled or not
const source = `
const { parentPort } = require("node:worker_threads")
let listXattrs = () => []
let xattrsRead = false
try {
  listXattrs = require(${JSON.stringify(addonPath)}).list
  xattrsRead = true
} catch {
  // no attributes here, as on the main thread (xattr.ts says why)
}
let nativeWalk
try {
  if (process.env.BLOBCHAIN_NATIVE_WALK !== "0") nativeWalk = require(${JSON.stringify(walkAddonPath)}).walk
} catch {
  // the walk in JavaScript, as on the main thread (walk.ts says why)
}
// a print's lines handed over as one buffer and where each line ends (moved, not copied), instead
// of a Map of a string per path (for a root filesystem, 140 000 objects to copy and keep)
const restartEvery = ${restartEvery}
const packBytes = ${packBytes.toString()}
const packLines = ${packLines.toString()}
const { fingerprintOf, digestsOf, statDigestOf } = (${makeFingerprinter.toString()})(
  require("node:fs"),
  require("node:crypto").createHash,
  ${compareNames.toString()},
  listXattrs,
  ${isCarried.toString()},
  { packLines, packBytes },
  nativeWalk,
  xattrsRead ? ${JSON.stringify(statSeedOf(true))} : ${JSON.stringify(statSeedOf(false))}
)
// a full collection after each print: the walk's buffer of whole lines (20 MB for a root
// filesystem, outside the heap) is garbage once the packed lines are handed over, and a thread
// waiting for its next request collects nothing: it would be kept for the whole build. gc() is
// there when the process started with --expose-gc, as the command-line tool does
// (bin/blobchain.js); V8's flags are not changed here: a code cache made under other flags than
// a process started with is refused
const collect = typeof globalThis.gc === "function" ? globalThis.gc : () => {}
parentPort.on("message", (m) => {
  let reply
  let transfer = []
  try {
    if (m.statOnly) {
      reply = { id: m.id, stat: statDigestOf(m.dir) ?? null }
    } else if (m.digestOnly) {
      reply = { id: m.id, digests: digestsOf(m.dir) }
    } else {
      const print = fingerprintOf(m.dir)
      const lines = print.lines
      transfer = [lines.bytes.buffer, lines.ends.buffer, lines.shared.buffer]
      reply = { id: m.id, print: { digest: print.digest, linked: print.linked, lines } }
    }
  } catch (error) {
    reply = { id: m.id, error: { message: String(error && error.message || error), path: error && error.path } }
  }
  parentPort.postMessage(reply, transfer)
  // once this handler's frame (and the walk in it) is gone
  setImmediate(collect)
})
`

interface Reply extends WorkerReply {
  readonly print?: { readonly digest: string; readonly linked: ReadonlySet<string>; readonly lines: PackedLines }
  readonly digests?: TreeDigests
  readonly stat?: string | null
  readonly error?: { readonly message: string; readonly path?: string }
}

// the file system's error as this thread would have thrown it: message and path
const failure = (reply: Reply): Error => {
  const error = new Error(reply.error?.message ?? "no answer")
  if (reply.error?.path !== undefined) Object.assign(error, { path: reply.error.path })
  return error
}

/** Prints taken on worker threads (prints queue there in order). */
export interface PrintThreads {
  /** The fingerprint of the tree at `dir`. */
  readonly fingerprint: (dir: string) => Promise<Print>
  /**
   * The digest alone of the tree's fingerprint: a check that a tree is as printed copies no
   * lines between threads (for a root filesystem, a Map of 140 000 strings).
   */
  readonly digest: (dir: string) => Promise<string>
  /** The digest and, from the same walk, the stat digest (see `Fingerprinter.digestsOf`). */
  readonly digests: (dir: string) => Promise<TreeDigests>
  /** The stat digest alone (see `Fingerprinter.statDigestOf`), `undefined` where it cannot be taken. */
  readonly statDigest: (dir: string) => Promise<string | undefined>
  /** Threads running now. */
  readonly running: () => number
  /** Stop both threads. */
  readonly close: () => Promise<void>
}

// a print's strings outlive the young generation (they are its lines): a smaller one takes no
// longer (a 139 000-entry walk, 1.24-1.33 s either way) and keeps 14 MB committed, not 38 MB.
// A thread stops once it has no print to take: a root filesystem's walk leaves its heap at 40 MB
// committed after a full collection, which a chain's build would keep to its end, per thread
const options = { limits: { maxYoungGenerationSizeMb: 8 }, exitWhenIdle: true }

/**
 * One print thread more than there are cores (at least three): a print is system calls, which
 * every core makes as fast as the first, and a chain's prints are asked for at once. With as
 * many threads as cores, the last of three trees' prints ran alone on one core while the other
 * waited (an unchanged rerun of a three-tree root filesystem chain: 2.4 s of prints); one more
 * keeps every core busy to the end (1.8 s). A thread starts when asked and stops once idle.
 */
export const makePrintThreads = (): PrintThreads => {
  const count = Math.max(3, os.availableParallelism() + 1)
  const threads = Array.from({ length: count }, (_, n) => ({ worker: evalWorker<Reply>(source, `blobchain fingerprints ${n + 1}`, options), busy: 0 }))
  // a request to the thread with the fewest waiting
  const ask = (request: object): Promise<Reply> => {
    const thread = threads.reduce((a, b) => (b.busy < a.busy ? b : a))
    thread.busy++
    return thread.worker.ask(request).finally(() => {
      thread.busy--
    })
  }
  const digests = (dir: string): Promise<TreeDigests> =>
    ask({ dir, digestOnly: true }).then((reply) => {
      if (reply.digests !== undefined) return reply.digests
      throw failure(reply)
    })
  return {
    fingerprint: (dir) =>
      ask({ dir }).then((reply) => {
        if (reply.print !== undefined) return { ...reply.print, lines: new PrintLines(reply.print.lines) }
        throw failure(reply)
      }),
    digest: (dir) => digests(dir).then((d) => d.digest),
    digests,
    statDigest: (dir) =>
      ask({ dir, statOnly: true }).then((reply) => {
        if (reply.stat !== undefined) return reply.stat ?? undefined
        throw failure(reply)
      }),
    running: () => threads.filter((t) => t.worker.running()).length,
    close: () => Promise.all(threads.map((t) => t.worker.close())).then(() => undefined)
  }
}
