/**
 * Files' contents hashed on worker threads: a diff whose files agree in every stat reads and
 * hashes both sides' bytes (a copied root filesystem: gigabytes), which on the event loop would
 * leave the second core idle and the walk waiting. Two workers (see evalWorker.ts), each given
 * a share of a batch by bytes. The threads belong to whoever made them (the stack's `Threads`
 * service), which closes them.
 */
import { evalWorker, type Reply as WorkerReply } from "../internal/evalWorker.js"

// plain CommonJS, evaluated in the worker: no file to find, bundled or not
const source = `
const { parentPort } = require("node:worker_threads")
const fs = require("node:fs")
const { createHash } = require("node:crypto")
const buffer = Buffer.allocUnsafe(1 << 20)
const digestOf = (path, size) => {
  const hash = createHash("sha256")
  const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  try {
    let total = 0
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null)
      if (n === 0) break
      hash.update(buffer.subarray(0, n))
      total += n
    }
    // a file that grew or shrank since its stat is not the file the stat described
    if (total !== size) return undefined
  } finally {
    fs.closeSync(fd)
  }
  return "sha256:" + hash.digest("hex")
}
parentPort.on("message", (m) => {
  const digests = m.files.map(({ path, size }) => {
    try {
      return digestOf(path, size)
    } catch {
      return undefined
    }
  })
  parentPort.postMessage({ id: m.id, digests })
})
`

interface Reply extends WorkerReply {
  readonly digests: ReadonlyArray<string | undefined>
}

/** A file to hash: its path and the size its stat gave. */
export interface FileToHash {
  readonly path: string
  readonly size: number
}

/** Contents hashed on two worker threads. */
export interface HashThreads {
  /**
   * The sha256 digest ("sha256:<hex>") of each file, in order; `undefined` for a file that could
   * not be read or whose size is no longer its stat's (the caller reads it itself, and fails as
   * it would have). Rejects only when no thread can answer.
   */
  readonly digestFiles: (files: ReadonlyArray<FileToHash>) => Promise<ReadonlyArray<string | undefined>>
  /** Threads running now. */
  readonly running: () => number
  /** Stop both threads. */
  readonly close: () => Promise<void>
}

/** Two hash threads; a batch is shared between them by bytes, the largest files placed first. */
export const makeHashThreads = (): HashThreads => {
  const threads = [0, 1].map((n) => evalWorker<Reply>(source, `blobchain hashes ${n + 1}`))
  const digestFiles = async (files: ReadonlyArray<FileToHash>): Promise<ReadonlyArray<string | undefined>> => {
    const shares = threads.map(() => ({ bytes: 0, at: [] as Array<number> }))
    const bySize = files.map((_, i) => i).sort((a, b) => files[b]!.size - files[a]!.size)
    for (const i of bySize) {
      const share = shares.reduce((a, b) => (b.bytes < a.bytes ? b : a))
      share.bytes += files[i]!.size
      share.at.push(i)
    }
    const digests: Array<string | undefined> = files.map(() => undefined)
    await Promise.all(shares.map((share, n) =>
      share.at.length === 0 ? undefined : threads[n]!.ask({ files: share.at.map((i) => files[i]) }).then((reply) => {
        share.at.forEach((i, k) => (digests[i] = reply.digests[k]))
      })
    ))
    return digests
  }
  return {
    digestFiles,
    running: () => threads.filter((t) => t.running()).length,
    close: () => Promise.all(threads.map((t) => t.close())).then(() => undefined)
  }
}
