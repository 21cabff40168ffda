/**
 * Putting a content-store blob at a path: a hard link from the local store when it is on the
 * same filesystem and its file's mode protects it, a copy (a reflink where it can be) when not,
 * else a copy streamed from the store; each published by rename.
 */
import { Effect, Option, Stream } from "effect"
import { type BigIntStats, constants as fsConstants, createReadStream } from "node:fs"
import * as fs from "node:fs/promises"
import * as NodePath from "node:path"
import { ContentIndex, keyOf, writtenRecord } from "../ContentIndex.js"
import { ContentStore } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { now } from "../fs/contents.js"
import { Threads } from "../Threads.js"
import { ImageError } from "./model.js"

const fail = (path: string, step: string) => (cause: unknown) =>
  new ImageError({ path, step, reason: cause instanceof Error ? cause.message : String(cause), cause })

/** `blobs/<alg>/<hex>` of a digest, relative. */
export const blobPath = (digest: Digest.Digest): string => `blobs/${Digest.algorithm(digest)}/${Digest.hex(digest)}`

/**
 * Whether an output may share the store's file (a hard link): only where the file's read-only
 * mode stops whoever edits the output from writing into the store through it. Root is not
 * stopped by modes, so as root each output gets its own copy (a reflink where the filesystem
 * can: no bytes copied).
 */
const linkIsSafe = (): boolean => process.getuid?.() !== 0

// the digest of the file at `path`, in the algorithm of `digest`
const hashFile = (path: string, digest: Digest.Digest) =>
  Effect.tryPromise({
    try: async () => {
      const hash = Digest.hasher(Digest.algorithm(digest))
      for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
      return hash.digest()
    },
    catch: fail(path, "check")
  })

/**
 * Whether the file at `path` (its lstat `stat`) holds exactly `digest`'s bytes. The content-hash
 * index answers for a file read before whose stat key still matches (a rerun's outputs are not
 * read again); otherwise the file is read, and what was read is recorded there. The index is an
 * accelerator: when it cannot answer or record, the file is read.
 */
const holds = (path: string, stat: BigIntStats, digest: Digest.Digest) =>
  Effect.gen(function*() {
    const index = Option.getOrUndefined(yield* Effect.serviceOption(ContentIndex))
    if (index === undefined || Digest.algorithm(digest) !== "sha256") return (yield* hashFile(path, digest)) === digest
    const key = keyOf(stat)
    const [known] = yield* index.lookup([key]).pipe(Effect.orElseSucceed(() => [undefined]))
    if (known === digest) return true
    const readAtNs = now()
    // read on a hash thread when the stack has them: a layer's blob is gigabytes, which on the
    // event loop is seconds of its time and a collection every few MiB. No answer from there (the
    // file changed while read, or the thread is gone) and it is read here.
    const threads = Option.getOrUndefined(yield* Effect.serviceOption(Threads))
    const [onThread] = threads === undefined
      ? [undefined]
      : yield* Effect.promise(() =>
        threads.hashes.digestFiles([{ path, size: Number(stat.size), key }]).catch(() => [undefined])
      )
    const found = onThread ?? (yield* hashFile(path, digest))
    yield* index.record([{ key, digest: found, readAtNs }]).pipe(Effect.ignore)
    return found === digest
  })

// how far before its write an output copy's mtime is set, at least: past the content-hash index's
// racy second (ContentIndex.writtenRecord)
const setBackNs = 2_000_000_000n

/**
 * A copy at `temp`, written whole by now, published at `dest` and recorded in the content-hash
 * index: its mtime is set back first (to its blob's in the store when that is older), so that the
 * next build that finds it does not read it again (a root filesystem's layer: gigabytes). Without
 * an index, or when it cannot record, the copy is published all the same.
 */
const publish = (temp: string, dest: string, digest: Digest.Digest, storedMtimeNs: bigint | undefined) =>
  Effect.gen(function*() {
    const wroteAtNs = now()
    const backNs = storedMtimeNs !== undefined && storedMtimeNs < wroteAtNs - setBackNs ? storedMtimeNs : wroteAtNs - setBackNs
    const back = new Date(Number(backNs / 1_000_000n))
    yield* Effect.tryPromise({ try: () => fs.utimes(temp, back, back), catch: fail(temp, "utimes") })
    yield* Effect.tryPromise({ try: () => fs.rename(temp, dest), catch: fail(dest, "rename") })
    const index = Option.getOrUndefined(yield* Effect.serviceOption(ContentIndex))
    if (index === undefined || Digest.algorithm(digest) !== "sha256") return
    const stat = yield* Effect.promise(() => fs.lstat(dest, { bigint: true }).catch(() => undefined))
    const record = stat === undefined ? undefined : writtenRecord(keyOf(stat), digest, wroteAtNs)
    if (record !== undefined) yield* index.record([record]).pipe(Effect.ignore)
  })

/**
 * Make `dest` hold blob `digest` of `size` bytes. A file already there is kept when it is the
 * store's own (linked before, where links are safe) or holds exactly the blob's bytes (read
 * once; the content-hash index keeps what was read for the next run); anything
 * else there is replaced. From a local store at `linkFrom`: a hard link where that is safe, else
 * a copy (a reflink where the filesystem can); otherwise the blob is streamed from the store.
 */
export const place = (digest: Digest.Digest, size: number, dest: string, linkFrom: string | undefined) =>
  Effect.gen(function*() {
    const source = linkFrom === undefined ? undefined : NodePath.join(linkFrom, blobPath(digest))
    const link = linkIsSafe()
    const existing = yield* Effect.promise(() => fs.lstat(dest, { bigint: true }).catch(() => undefined))
    if (existing !== undefined && existing.isFile() && existing.size === BigInt(size)) {
      const stored = source === undefined ? undefined : yield* Effect.promise(() => fs.stat(source, { bigint: true }).catch(() => undefined))
      const shared = stored !== undefined && stored.ino === existing.ino && stored.dev === existing.dev
      // the store's own file: kept where links are safe, given a copy of its own where not
      if (shared && link) return "kept" as const
      if (!shared && (yield* holds(dest, existing, digest))) return "kept" as const
    }
    yield* Effect.tryPromise({ try: () => fs.rm(dest, { force: true }), catch: fail(dest, "replace") })
    const temp = `${dest}.partial-${process.pid}`
    if (source !== undefined) {
      if (link) {
        const linked = yield* Effect.promise(() => fs.link(source, dest).then(() => true, () => false))
        if (linked) return "linked" as const
      } else {
        const copied = yield* Effect.promise(() =>
          fs.copyFile(source, temp, fsConstants.COPYFILE_FICLONE).then(() => fs.chmod(temp, 0o644)).then(
            () => true,
            () => fs.rm(temp, { force: true }).then(() => false)
          )
        )
        if (copied) {
          const stored = yield* Effect.promise(() => fs.stat(source, { bigint: true }).then((s) => s.mtimeNs, () => undefined))
          yield* publish(temp, dest, digest, stored).pipe(Effect.onError(() => Effect.promise(() => fs.rm(temp, { force: true }))))
          return "copied" as const
        }
      }
    }
    const store = yield* ContentStore
    yield* Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => fs.open(temp, "w", 0o644), catch: fail(temp, "create") }),
      (handle) =>
        Stream.runForEach(store.read(digest), (chunk) =>
          Effect.tryPromise({ try: () => handle.write(chunk), catch: fail(temp, "write") })
        ).pipe(Effect.zipRight(Effect.tryPromise({ try: () => handle.sync(), catch: fail(temp, "sync") }))),
      (handle) => Effect.promise(() => handle.close())
    ).pipe(
      Effect.zipRight(publish(temp, dest, digest, undefined)),
      Effect.onError(() => Effect.promise(() => fs.rm(temp, { force: true })))
    )
    return "copied" as const
  })

/** Write `bytes` to `path` atomically (temp file, fsync, rename). */
export const writeFileAtomic = (path: string, bytes: Uint8Array | string) =>
  Effect.tryPromise({
    try: async () => {
      const temp = `${path}.partial-${process.pid}`
      const handle = await fs.open(temp, "w", 0o644)
      try {
        await handle.writeFile(bytes)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await fs.rename(temp, path)
    },
    catch: fail(path, "write")
  })
